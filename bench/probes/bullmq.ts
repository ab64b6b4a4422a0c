/**
 * The peer: BullMQ on a real redis-server doing the same work — enqueue a ≈100 B job, a worker
 * that does nothing, matched concurrency. Runs on Node (BullMQ's home runtime).
 */
import { Queue, Worker } from "bullmq";
import { reading } from "../lib/payload.ts";
import { finish, probeArgs } from "./_args.ts";

interface _Args {
  port: number;
  seconds: number;
  producers: number;
  concurrency: number;
}

const a = probeArgs<_Args>();
const connection = { host: "127.0.0.1", port: a.port, maxRetriesPerRequest: null };
const jobOpts = { removeOnComplete: true, removeOnFail: true };
const queue = new Queue("bench", { connection });
await queue.waitUntilReady();

async function produce(seconds: number): Promise<number> {
  let n = 0;
  const end = performance.now() + seconds * 1_000;
  await Promise.all(Array.from({ length: a.producers }, async () => {
    while (performance.now() < end) await queue.add("r", reading(n++), jobOpts);
  }));
  return n;
}

// 1. Enqueue alone.
let t = performance.now();
const enqueued = await produce(a.seconds);
const enqueueSec = (performance.now() - t) / 1_000;

// 2. Drain that backlog with the worker.
let completed = 0;
const worker = new Worker("bench", async () => {}, { connection, concurrency: a.concurrency, autorun: false });
worker.on("completed", () => void completed++);
t = performance.now();
void worker.run();
const drainBound = performance.now() + 120_000;
while (completed < enqueued && performance.now() < drainBound) await new Promise((r) => setTimeout(r, 5));
const drainSec = (performance.now() - t) / 1_000;
const drained = completed;

// 3. Sustained: producers and the worker together.
const before = completed;
t = performance.now();
const produced = await produce(a.seconds);
const sustainedSec = (performance.now() - t) / 1_000;
const processed = completed - before;

await worker.close(true);
await queue.obliterate({ force: true }).catch(() => {});
await queue.close();
finish({
  enqueuePerSec: enqueued / enqueueSec,
  drainPerSec: drained / drainSec,
  drained,
  sustained: { enqueuePerSec: produced / sustainedSec, processPerSec: processed / sustainedSec },
  producers: a.producers,
  concurrency: a.concurrency,
});
