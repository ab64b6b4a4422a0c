/**
 * Measuring an isolate tier for the benchmark: cold start, per-message overhead and resident
 * memory per idle isolate, with the same trivial handler in either tier.
 * @module
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { encodeCbor } from "../../src/codec/cbor.ts";
import { buildHandler } from "../../src/bundler/bundle.ts";
import type { Isolate, IsolateOptions } from "../../src/sandbox/isolate.ts";
import { WasmIsolate } from "../../src/sandbox/quickjs/isolate.ts";
import { WorkerIsolate } from "../../src/sandbox/worker/isolate.ts";
import { spareCounts } from "../../src/sandbox/quickjs/spare.ts";

/** What {@link measureTier} found. */
export interface TierFigures {
  tier: "wasm" | "worker";
  /**
   * Median time from creating an isolate to its handler's policy being known, ms. In the wasm tier
   * with a spare sandbox waiting (a drop-in, a swap, a sandbox replaced after a trap), each start a
   * moment after the one before.
   */
  coldStartMs: number;
  /** The wasm tier's starts back to back, none finding a spare (a host starting many handlers at once), ms. */
  coldStartBackToBackMs?: number;
  /** Mean time of one invoke (CBOR payload in, one ctx.publish out), µs. */
  perMessageUs: number;
  /** Process RSS growth per idle isolate (after loading one message each), bytes. */
  rssPerIsolateBytes: number;
  /** The RSS difference was below the process's own noise (it came out negative): reported as 0. */
  rssBelowNoise?: boolean;
  isolates: number;
  messages: number;
}

const _HANDLER = (tier: string) => `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "bench", isolation: ${JSON.stringify(tier)},
  async handle(r, ctx) { await ctx.publish("bench", { n: r.n }); },
});
`;

/**
 * Start `isolates` isolates of one tier in this process and time them.
 * @param dir a scratch directory (handler source and bundles go there)
 * @example
 * ```ts
 * const f = await measureTier({ tier: "wasm", dir: "/tmp/m" }); // { coldStartMs, perMessageUs, rssPerIsolateBytes, … }
 * ```
 */
export async function measureTier(o: { tier: "wasm" | "worker"; dir: string; isolates?: number; messages?: number }): Promise<TierFigures> {
  const isolates = o.isolates ?? 20;
  const messages = o.messages ?? 2_000;
  await mkdir(o.dir, { recursive: true });
  const file = join(o.dir, `bench-${o.tier}.ts`);
  await writeFile(file, _HANDLER(o.tier));
  const built = await buildHandler(file, join(o.dir, "bundles"));
  const opts: IsolateOptions = { name: "bench", url: built.handlerUrl, onCall: async () => {}, onLog: () => {}, onCrash: () => {} };
  const make = (): Isolate => (o.tier === "wasm" ? new WasmIsolate({ ...opts, guestUrl: built.guestUrl, guestSplit: built.guestSplit }) : new WorkerIsolate(opts));
  const data = encodeCbor({ n: 1 });
  const inv = { subject: "ingest.bench", seq: 1, attempt: 1, data };
  await (async () => { // warm-up: compile the engine once, as a running host has
    const w = make();
    await w.start();
    await w.invoke(inv, 5_000);
    await w.terminate();
  })();
  // A full collection and a pause before each RSS sample (Bun: Bun.gc; Node and Deno: --expose-gc
  // when given). Without it Bun's RSS could fall while isolates were added (it printed -2.96 MiB).
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  const gc = (globalThis as { gc?: () => void }).gc ?? (bun ? () => bun.gc(true) : undefined);
  const settle = async () => {
    gc?.();
    await new Promise((r) => setTimeout(r, 200));
    gc?.();
  };
  await settle();
  const rss0 = process.memoryUsage().rss;
  const started: Isolate[] = [];
  const starts: number[] = [];
  for (let i = 0; i < isolates; i++) {
    const t = performance.now();
    const iso = make();
    await iso.start();
    starts.push(performance.now() - t);
    await iso.invoke(inv, 5_000);
    started.push(iso);
  }
  await settle();
  const measured = (process.memoryUsage().rss - rss0) / isolates;
  const rssPer = Math.max(0, measured);
  const one = started[0]!;
  const t = performance.now();
  for (let i = 0; i < messages; i++) await one.invoke(inv, 5_000);
  const perMessageUs = ((performance.now() - t) * 1_000) / messages;
  await Promise.all(started.map((s) => s.terminate()));
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  if (o.tier === "wasm") {
    // Starts a moment apart, each finding the spare its predecessor left (at most 2 s to be made).
    const prepared: number[] = [];
    for (let i = 0; i < 11; i++) {
      const made = spareCounts.made;
      for (let w = 0; w < 40 && spareCounts.made === made; w++) await new Promise((r) => setTimeout(r, 50));
      const t = performance.now();
      const iso = make();
      await iso.start();
      prepared.push(performance.now() - t);
      await iso.invoke(inv, 5_000);
      await iso.terminate();
    }
    return { tier: o.tier, coldStartMs: median(prepared), coldStartBackToBackMs: median(starts), perMessageUs, rssPerIsolateBytes: rssPer, ...(measured < 0 ? { rssBelowNoise: true } : {}), isolates, messages };
  }
  return { tier: o.tier, coldStartMs: median(starts), perMessageUs, rssPerIsolateBytes: rssPer, ...(measured < 0 ? { rssBelowNoise: true } : {}), isolates, messages };
}
