/**
 * The Node user's alternative doing Outpost's job: Hono on @hono/node-server, each POST decoded
 * (CBOR), checked with the same valibot schema, `queue.add` to BullMQ on a real redis-server,
 * answered 202; a BullMQ worker (concurrency matched) runs the same no-op. wrk drives it for
 * `seconds`; the figure is sustained = min(accepted/s, completed/s), and the backlog left.
 */
import { Queue, Worker } from "bullmq";
import { Hono } from "hono";
import { serve } from "@hono/node-server";
import * as v from "valibot";
import { decodeCbor } from "../../src/codec/cbor.ts";
import { cborReading } from "../lib/payload.ts";
import { runWrk } from "../lib/wrk.ts";
import { finish, probeArgs } from "./_args.ts";

interface _Args {
  port: number;
  seconds: number;
  connections: number;
  concurrency: number;
  dir: string;
}

const a = probeArgs<_Args>();
const Reading = v.object({ sensor: v.string(), celsius: v.number(), humidity: v.number(), pressure: v.number(), battery: v.number(), seq: v.number(), at: v.number() });
const connection = { host: "127.0.0.1", port: a.port, maxRetriesPerRequest: null };
const jobOpts = { removeOnComplete: true, removeOnFail: true };
const queue = new Queue("pipeline", { connection });
await queue.waitUntilReady();
let completed = 0;
const worker = new Worker("pipeline", async () => {}, { connection, concurrency: a.concurrency });
worker.on("completed", () => void completed++);
let accepted = 0;
const app = new Hono();
app.post("/", async (c) => {
  const r = v.safeParse(Reading, decodeCbor(new Uint8Array(await c.req.arrayBuffer())));
  if (!r.success) return c.json({ error: "invalid_reading" }, 400);
  await queue.add("r", r.output, jobOpts);
  accepted++;
  return c.json({ accepted: 1 }, 202);
});
const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
await new Promise((r) => server.once("listening", r));
const port = (server.address() as { port: number }).port;
// Warm-up, then the measured window.
await runWrk({ url: `http://127.0.0.1:${port}/`, body: cborReading(), contentType: "application/cbor", seconds: 1, connections: a.connections, dir: a.dir });
const a0 = accepted;
const c0 = completed;
const w = await runWrk({ url: `http://127.0.0.1:${port}/`, body: cborReading(), contentType: "application/cbor", seconds: a.seconds, connections: a.connections, dir: a.dir });
const acceptedPerSec = (accepted - a0) / w.seconds;
const completedPerSec = (completed - c0) / w.seconds;
const backlog = await queue.getWaitingCount();
server.close();
await worker.close(true);
await queue.obliterate({ force: true }).catch(() => {});
await queue.close();
finish({ acceptedPerSec, completedPerSec, sustainedPerSec: Math.min(acceptedPerSec, completedPerSec), backlogAtEnd: backlog, non2xx: w.non2xx, connections: a.connections, concurrency: a.concurrency });
