/**
 * One wasm-tier sandbox prepared ahead of need: QuickJS instantiated, with the prelude (guest
 * bootstrap and SDK) evaluated, so a handler's start evaluates only its own part. Measured on this
 * project's machine: instantiating 4.8 ms, compiling the 32 KB self-contained guest 9.1 ms of its
 * 10.9 ms, a handler's part well under 1 ms. The spare is made a moment after a handler started in
 * the wasm tier (out of the way of the one loading; a host without wasm-tier handlers never holds
 * one), and only serves a sandbox of the same prelude and memory cap. It is used once: no state
 * passes from one handler to another.
 * @module
 */
import { readFile } from "node:fs/promises";
import { WASM_DEFAULTS } from "../../sdk/definition.ts";
import { WASM_LOAD_CPU_MS, WasmSandbox, type SandboxHooks, type SandboxLimits } from "./sandbox.ts";

/** Delay after a start before the next spare is made. */
const _REFILL_MS = 250;

const _idle: SandboxHooks = {
  call: () => Promise.reject(new Error("a spare sandbox has no owner yet")),
  log: () => {},
  settle: () => {},
  budgetMs: () => WASM_LOAD_CPU_MS, // the prelude gets a module's load budget
  charge: () => {},
  fatal: () => {},
};

/** How many spares were made and how many served a start (for tests and the bench). */
export const spareCounts = { made: 0, taken: 0 };

const _preludes = new Map<string, Promise<string>>();
let _spare: { key: string; sb: Promise<WasmSandbox | undefined> } | undefined;
let _timer: ReturnType<typeof setTimeout> | undefined;

function _prelude(path: string): Promise<string> {
  let p = _preludes.get(path);
  if (!p) {
    p = readFile(path, "utf8");
    p.catch(() => _preludes.delete(path));
    _preludes.set(path, p);
  }
  return p;
}

async function _prepare(preludePath: string, memoryMb: number): Promise<WasmSandbox> {
  return await WasmSandbox.prepare(await _prelude(preludePath), { memoryMb, stackKb: WASM_DEFAULTS.stackKb }, _idle);
}

/**
 * A sandbox with the prelude at `preludePath` evaluated and `limits` applied, given `hooks`: the
 * spare when it matches, else one prepared now.
 * @throws GuestError, SandboxInterruptedError, SandboxTrapError when the prelude does not evaluate
 */
export async function preparedSandbox(preludePath: string, limits: SandboxLimits, hooks: SandboxHooks): Promise<WasmSandbox> {
  const key = _key(preludePath, limits.memoryMb);
  const s = _spare;
  _spare = undefined;
  let sb: WasmSandbox | undefined;
  if (s?.key === key) {
    sb = await s.sb;
    if (sb && !sb.dead) spareCounts.taken++;
  } else if (s) void s.sb.then((x) => x?.dispose());
  if (!sb || sb.dead) sb = await _prepare(preludePath, limits.memoryMb);
  sb.adopt(hooks, limits);
  return sb;
}

/**
 * Make a spare like this one shortly (a handler that started in the wasm tier: a tier probe that
 * ends in a worker does not ask for one, so a host without wasm-tier handlers never holds one).
 */
export function keepSpare(preludePath: string, memoryMb: number): void {
  const key = _key(preludePath, memoryMb);
  clearTimeout(_timer);
  _timer = setTimeout(() => {
    if (_spare?.key === key) return;
    void _spare?.sb.then((x) => x?.dispose());
    const sb = _prepare(preludePath, memoryMb).then((x) => (spareCounts.made++, x), () => undefined);
    _spare = { key, sb };
  }, _REFILL_MS);
  (_timer as { unref?: () => void }).unref?.();
}

function _key(preludePath: string, memoryMb: number): string {
  return `${memoryMb}\u0000${preludePath}`;
}
