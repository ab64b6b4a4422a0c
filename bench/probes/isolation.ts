/**
 * Isolation costs on the host's runtime, with the host's own classes:
 * - cold start: handler file → built → isolate started → consumer → first message acked, through
 *   HandlerRunner exactly as the registry runs it (the drop-in watcher is not included), twice per
 *   handler: the first build, then a fresh runner of the same file built once before (the build
 *   cache, as at a host restart);
 * - per-message cost of the worker tier against calling the same bundled handler in-process
 *   (both decode the CBOR and re-check the schema, as the isolate does).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { connectBroker } from "../../src/broker/connect.ts";
import { decodeCbor } from "../../src/codec/cbor.ts";
import { HandlerRunner } from "../../src/dispatch/runner.ts";
import { buildHandler } from "../../src/bundler/bundle.ts";
import { createLogger } from "../../src/util/log.ts";
import { WorkerIsolate } from "../../src/sandbox/worker/isolate.ts";
import { sinkHandler } from "../lib/handlers.ts";
import { cborReading } from "../lib/payload.ts";
import { finish, probeArgs } from "./_args.ts";

interface _Args {
  url: string;
  coldRuns: number;
  seqMessages: number;
  parMessages: number;
  window: number;
}

const a = probeArgs<_Args>();
const log = createLogger("error");
const dir = await mkdtemp(join(tmpdir(), "outpost-bench-iso-"));
const broker = await connectBroker({ servers: a.url }, log);
const data = cborReading(3);

/** One cold start; returns its phases in ms. */
async function coldStart(k: number, again: boolean): Promise<{ build: number; load: number; firstAck: number; total: number }> {
  const name = `cold${k}`;
  const durable = `outpost-${name}`;
  // The consumer the runner will find (same config), so the reading published now has interest.
  await broker.jsm.consumers.add("INGEST", {
    durable_name: durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All,
    description: `outpost handler ${name}`, ack_wait: nanos(30_000 + 30_000), max_deliver: -1, max_ack_pending: 1_000,
    filter_subject: `ingest.${name}`,
  });
  const ack = await broker.js.publish(`ingest.${name}`, data);
  const file = join(dir, `${name}.ts`);
  const t0 = performance.now();
  if (!again) await writeFile(file, sinkHandler(name, 1));
  const built = await buildHandler(file, join(dir, "bundles"));
  const t1 = performance.now();
  const runner = new HandlerRunner({ built, broker, log, emit: async (topic, bytes) => void (await broker.js.publish(`ingest.${topic}`, bytes)) });
  await runner.load();
  const t2 = performance.now();
  await runner.run();
  for (let i = 0; i < 5_000; i++) {
    const info = await broker.jsm.consumers.info("INGEST", durable);
    if (info.ack_floor.stream_seq >= ack.seq) break;
    await new Promise((r) => setTimeout(r, 1));
  }
  const t3 = performance.now();
  await runner.stop(1_000);
  await broker.jsm.consumers.delete("INGEST", durable).catch(() => false);
  return { build: t1 - t0, load: t2 - t1, firstAck: t3 - t2, total: t3 - t0 };
}

const firsts = [];
const colds = [];
for (let k = 0; k < a.coldRuns; k++) {
  firsts.push(await coldStart(k, false));
  colds.push(await coldStart(k, true));
}

// Per-message overhead.
const file = join(dir, "overhead.ts");
await writeFile(file, sinkHandler("overhead", a.window));
const built = await buildHandler(file, join(dir, "bundles"));
const iso = new WorkerIsolate({ name: "overhead", url: built.handlerUrl, onCall: async () => {}, onLog: () => {}, onCrash: () => {} });
await iso.start();
const def = (await import(built.schemaUrl.href)).default as {
  schema: { "~standard": { validate(v: unknown): unknown } };
  handle(r: unknown, ctx: unknown): Promise<void>;
};
const inProcess = async () => {
  const r = (await def.schema["~standard"].validate(decodeCbor(new Uint8Array(data)))) as { value: unknown };
  await def.handle(r.value, { signal: new AbortController().signal });
};
const viaWorker = () => iso.invoke({ subject: "ingest.overhead", seq: 1, attempt: 1, data }, 30_000);

async function sequential(fn: () => Promise<void>, n: number): Promise<number> {
  for (let i = 0; i < Math.min(200, n); i++) await fn(); // warm-up
  const t = performance.now();
  for (let i = 0; i < n; i++) await fn();
  return ((performance.now() - t) * 1_000) / n; // µs per message
}
async function parallel(fn: () => Promise<void>, n: number, window: number): Promise<number> {
  let left = n;
  const t = performance.now();
  await Promise.all(Array.from({ length: window }, async () => {
    while (left-- > 0) await fn();
  }));
  return n / ((performance.now() - t) / 1_000); // messages per second
}
const seqWorker = await sequential(viaWorker, a.seqMessages);
const seqInProcess = await sequential(inProcess, a.seqMessages);
const parWorker = await parallel(viaWorker, a.parMessages, a.window);
const parInProcess = await parallel(inProcess, a.parMessages, a.window);
await iso.terminate();
await broker.close();
await rm(dir, { recursive: true, force: true });

const spread = (runs: { total: number }[]) => {
  const s = runs.map((c) => c.total).sort((x, y) => x - y);
  return { median: s[Math.floor(s.length / 2)] ?? 0, min: s[0] ?? 0, max: s[s.length - 1] ?? 0, runs };
};
finish({
  coldStartMs: spread(colds),
  firstBuildMs: spread(firsts),
  perMessage: {
    workerUs: seqWorker,
    inProcessUs: seqInProcess,
    overheadUs: seqWorker - seqInProcess,
    workerPerSec: parWorker,
    inProcessPerSec: parInProcess,
    window: a.window,
  },
});
