/**
 * Isolate tiers side by side on this runtime, with the host's own classes (bench/lib/wasm_measure.ts):
 * cold start, per-message time and RSS per idle isolate, for the wasm tier and the worker tier.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measureTier } from "../lib/wasm_measure.ts";
import { finish, probeArgs } from "./_args.ts";

const a = probeArgs<{ isolates: number; messages: number }>();
const dir = await mkdtemp(join(tmpdir(), "outpost-bench-tiers-"));
try {
  const wasm = await measureTier({ tier: "wasm", dir: join(dir, "wasm"), isolates: a.isolates, messages: a.messages });
  const worker = await measureTier({ tier: "worker", dir: join(dir, "worker"), isolates: Math.min(a.isolates, 4), messages: a.messages });
  finish({ wasm, worker });
} finally {
  await rm(dir, { recursive: true, force: true });
}
