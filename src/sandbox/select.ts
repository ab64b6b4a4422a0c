/**
 * Which isolate a handler runs in. `isolation` is a field of the definition, known only once the
 * module ran, and a wasm-tier handler's code must never run in a V8 worker of the host. So a
 * handler whose tier is not known yet is first evaluated in a wasm sandbox (QuickJS): if its
 * definition says `isolation: "wasm"` that sandbox simply keeps running it; otherwise the sandbox
 * is discarded and the handler starts in a worker. A module that fails in QuickJS falls back to
 * the worker tier only when its bundle does not name the wasm tier at all.
 * @module
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { BuiltHandler } from "../bundler/bundle.ts";
import type { HandlerInfo } from "../sdk/definition.ts";
import { HandlerError, type Invocation, type Isolate, type IsolateOptions } from "./isolate.ts";
import type { BatchFailure } from "./protocol.ts";

/** A batch handed to an isolate kind without batch support: permanent, so it goes to DLQ at once. */
class PermanentBatchError extends HandlerError {
  constructor(message: string) {
    super({ name: "PermanentError", message }, true);
  }
}
import { RawWasmIsolate } from "./raw_wasm/isolate.ts";
import { WasmIsolate, type WasmIsolateOptions } from "./quickjs/isolate.ts";
import { WorkerIsolate } from "./worker/isolate.ts";

/**
 * The isolate for a handler.
 * @param built the handler's bundles
 * @param known its policy when already loaded once (a restart): the tier is then known
 * @param opts what every isolate kind is given
 * @param forceWasm the operator requires the wasm tier for every handler
 */
export function selectIsolate(built: BuiltHandler, known: HandlerInfo | undefined, opts: IsolateOptions, forceWasm = false): Isolate {
  if (built.kind === "wasm-module") return new RawWasmIsolate(opts);
  // The operator's --isolation wasm: never evaluated in V8, whatever the definition says.
  if (forceWasm) {
    return new WasmIsolate({ ...opts, ..._guest(built), memoryMb: known?.memoryMb, stackKb: known?.stackKb, cpuMs: known?.cpuMs, force: true });
  }
  if (known?.isolation === "wasm") {
    return new WasmIsolate({ ...opts, ..._guest(built), stackKb: known.stackKb, cpuMs: known.cpuMs });
  }
  // A handler whose own code never says "wasm" cannot ask for the wasm tier: skip the probe.
  if (known || built.mentionsWasm === false) return new WorkerIsolate(opts);
  return new TierProbe(built, opts);
}

/** What a wasm-tier sandbox loads of a handler's build: the whole guest, its part and prelude, or its modules. */
function _guest(built: BuiltHandler): Pick<WasmIsolateOptions, "guestUrl" | "guestModules" | "guestSplit"> {
  return { guestUrl: built.guestUrl, guestModules: built.guestModules, guestSplit: built.guestSplit };
}

/** Whether a handler's sandbox code names the wasm tier (a literal `isolation: "wasm"`). */
export async function declaresWasm(built: BuiltHandler): Promise<boolean> {
  // Built without a bundler, the guest only imports the handler's file: read that instead.
  const code = await readFile(built.guestModules ? built.file : fileURLToPath(built.guestUrl), "utf8");
  return /\bisolation\s*:\s*(["'`])wasm\1/.test(code);
}

/** Loads a handler of unknown tier in QuickJS first, then keeps it there or moves it to a worker. */
class TierProbe implements Isolate {
  #built: BuiltHandler;
  #opts: IsolateOptions;
  #inner: Isolate | undefined;

  constructor(built: BuiltHandler, opts: IsolateOptions) {
    this.#built = built;
    this.#opts = opts;
  }

  get inFlight(): number {
    return this.#inner?.inFlight ?? 0;
  }

  get heapLimitEnforced(): boolean {
    return this.#inner?.heapLimitEnforced ?? false;
  }

  get sandboxed(): boolean {
    return this.#inner?.sandboxed ?? false;
  }

  memory(): { bytes: number } | undefined {
    return this.#inner?.memory?.();
  }

  async start(): Promise<HandlerInfo> {
    // Limits unknown yet: the sandbox starts with the wasm tier's defaults.
    const wasm = new WasmIsolate({ ...this.#opts, ..._guest(this.#built), memoryMb: undefined });
    try {
      const info = await wasm.start();
      if (info.isolation === "wasm") {
        this.#inner = wasm;
        return info;
      }
      await wasm.terminate();
    } catch (e) {
      await wasm.terminate();
      if (await declaresWasm(this.#built)) throw e;
    }
    this.#inner = new WorkerIsolate(this.#opts);
    return await this.#inner.start();
  }

  invoke(inv: Invocation, timeoutMs: number): Promise<void> {
    return this.#inner!.invoke(inv, timeoutMs);
  }

  invokeBatch(items: Invocation[], timeoutMs: number): Promise<BatchFailure[]> {
    const inner = this.#inner!;
    if (!inner.invokeBatch) return Promise.reject(new PermanentBatchError("Batches (`batch`, `handleBatch`) are not available in this isolation tier"));
    return inner.invokeBatch(items, timeoutMs);
  }

  cancelAll(): void {
    this.#inner?.cancelAll();
  }

  async terminate(): Promise<void> {
    await this.#inner?.terminate();
  }
}
