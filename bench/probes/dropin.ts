/**
 * Drop-in handlers against a running host, through its directory watcher:
 * - cold start: a new handler file written → its first reading acked (a reading already waits in
 *   the stream for the handler's durable consumer);
 * - swap pause: the same file replaced while readings arrive at a steady rate; the host reports the
 *   gap between the old version's last ack and the new version's first (`lastSwap.pauseMs`).
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { connectBroker } from "../../src/broker/connect.ts";
import { createLogger } from "../../src/util/log.ts";
import { cborReading } from "../lib/payload.ts";
import { finish, probeArgs } from "./_args.ts";

const a = probeArgs<{ url: string; auth: Record<string, string>; nats: string; workersDir: string; runs: number; swaps: number }>();
const broker = await connectBroker({ servers: a.nats }, createLogger("error"));
const data = cborReading(7);
const handler = (topic: string, version: number) => `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: ${JSON.stringify(topic)}, concurrency: 8, async handle(r, ctx) { if (r === ${version}) ctx.log("version ${version}"); } });
`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ackedUpTo(durable: string, seq: number, timeoutMs: number): Promise<void> {
  for (const until = Date.now() + timeoutMs; Date.now() < until; await sleep(1)) {
    if ((await broker.jsm.consumers.info("INGEST", durable)).ack_floor.stream_seq >= seq) return;
  }
  throw new Error(`${durable} did not ack ${seq} within ${timeoutMs} ms`);
}

const cold: number[] = [];
for (let k = 0; k < a.runs; k++) {
  const name = `drop${k}_${Date.now().toString(36)}`;
  await broker.jsm.consumers.add("INGEST", {
    durable_name: `outpost-${name}`, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(35_000), max_deliver: -1, filter_subject: `ingest.${name}`,
  });
  const ack = await broker.js.publish(`ingest.${name}`, data);
  const t0 = performance.now();
  await writeFile(join(a.workersDir, `${name}.ts`), handler(name, 0));
  await ackedUpTo(`outpost-${name}`, ack.seq, 30_000);
  cold.push(performance.now() - t0);
}

// Swap pause: 200 readings/s into one topic while its file is replaced `swaps` times.
const topic = `swap_${Date.now().toString(36)}`;
const file = join(a.workersDir, `${topic}.ts`);
await writeFile(file, handler(topic, 0));
const view = async () => {
  const { handlers } = await (await fetch(`${a.url}/v1/handlers`, { headers: a.auth })).json() as { handlers: { name: string; status: string; swaps: number; lastSwap: { pauseMs: number | null } | null }[] };
  return handlers.find((h) => h.name === topic);
};
for (let i = 0; i < 300 && (await view())?.status !== "running"; i++) await sleep(20);
let feeding = true;
const feeder = (async () => {
  while (feeding) {
    await broker.js.publish(`ingest.${topic}`, data);
    await sleep(5);
  }
})();
const pauses: number[] = [];
for (let v = 1; v <= a.swaps; v++) {
  await sleep(500);
  await writeFile(file, handler(topic, v));
  let h;
  for (let i = 0; i < 500; i++) {
    h = await view();
    if (h && h.swaps === v && h.lastSwap?.pauseMs !== null && h.lastSwap?.pauseMs !== undefined) break;
    await sleep(20);
  }
  if (h?.lastSwap?.pauseMs !== null && h?.lastSwap?.pauseMs !== undefined) pauses.push(h.lastSwap.pauseMs);
}
feeding = false;
await feeder;
await broker.close();
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
finish({
  coldStartMs: { median: median(cold), min: Math.min(...cold), max: Math.max(...cold) },
  swapPauseMs: { median: median(pauses), min: Math.min(...pauses), max: Math.max(...pauses), swaps: pauses.length },
});
