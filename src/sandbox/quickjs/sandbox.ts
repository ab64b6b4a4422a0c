/**
 * Host side of one wasm-tier sandbox: a QuickJS runtime in its own WebAssembly instance, with a
 * heap limit, a stack limit and an interrupt handler that enforces a CPU budget on every entry.
 * Only three host functions exist inside (`call`, `log`, `settle`, taken by the guest bootstrap).
 * @module
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { MAX_LOG_LINE } from "../budget.ts";
import type { QuickJSContext, QuickJSHandle, QuickJSRuntime } from "quickjs-emscripten-core";
import type { ErrorData } from "../../errors.ts";
import { newQuickJS, type QuickJSInstance } from "./engine.ts";
import { PRELUDE_MODULE } from "../../bundler/guest_split.ts";
import { env } from "../../runtime/process.ts";

/**
 * CPU a module may spend at load in a sandbox (module-level code and the definition's checks):
 * the handler's, the schema sandbox's and the prelude of a spare. OUTPOST_WASM_LOAD_MS raises it
 * for slow machines (an emulated or a small ARM board).
 */
export const WASM_LOAD_CPU_MS = Number(env().OUTPOST_WASM_LOAD_MS) > 0 ? Number(env().OUTPOST_WASM_LOAD_MS) : 2_000;

/** The sandbox used up the CPU budget of the current entry; it is no longer usable. */
export class SandboxInterruptedError extends Error {
  override name = "SandboxInterruptedError";
}

/** The sandbox trapped, ran out of memory or overflowed the host's stack; it is no longer usable. */
export class SandboxTrapError extends Error {
  override name = "SandboxTrapError";
}

/** An error the guest code raised where the host expected a value (load, describe). */
export class GuestError extends Error {
  override name = "GuestError";
  readonly data: ErrorData;
  constructor(data: ErrorData) {
    super(`${data.name}: ${data.message}`);
    this.data = data;
  }
}

/** What a sandbox needs from its owner. */
export interface SandboxHooks {
  /** An output of invocation `id`. */
  call(id: number, op: "publish" | "emit", subject: string, data: Uint8Array, delayMs?: number): Promise<void>;
  /** A log line of invocation `id` (0 outside any). */
  log(id: number, level: "debug" | "info" | "warn" | "error", message: string): void;
  settle(id: number, error?: string): void;
  /** CPU ms the next entry into the sandbox may use. */
  budgetMs(): number;
  /** CPU ms the last entry used. */
  charge(ms: number): void;
  /** The sandbox died in an entry the owner did not make itself (a ctx call's reply). */
  fatal(e: SandboxInterruptedError | SandboxTrapError): void;
}

/**
 * Files a guest may import, for a handler loaded without a bundler (the single file on a device
 * without esbuild): `outpost/handler` and the SDK's modules from `sdkDir`, relative imports inside
 * `roots`. Read by the host, synchronously, at load; nothing else is reachable.
 */
export interface GuestModules {
  /** Directory of the embedded SDK's modules (`sdk.mjs`, `guest.mjs`, `valibot.mjs`, …). */
  sdkDir: string;
  /** Directories whose `.js`/`.mjs` files the guest may import. */
  roots: string[];
}

/** Limits of one sandbox. */
export interface SandboxLimits {
  memoryMb: number;
  stackKb: number;
}

function _resolveModule(m: GuestModules, base: string, req: string): string | { error: Error } {
  if (req === "outpost/handler") return join(m.sdkDir, "sdk.mjs");
  if (req.startsWith("outpost-sdk:")) return join(m.sdkDir, `${req.slice(12)}.mjs`);
  if (req.startsWith("file:")) return fileURLToPath(req);
  if (req.startsWith("./") || req.startsWith("../")) return resolve(dirname(base.startsWith("file:") ? fileURLToPath(base) : base), req);
  if (isAbsolute(req)) return req;
  return { error: new Error(`Cannot import ${JSON.stringify(req)} in the wasm tier: only outpost/handler and the handler's own files (relative imports) are there; bundle packages into the handler (outpost pack) instead`) };
}

function _loadModule(m: GuestModules, path: string): string | { error: Error } {
  const inside = [m.sdkDir, ...m.roots].some((r) => path === r || path.startsWith(r.endsWith(sep) ? r : r + sep));
  if (!inside) return { error: new Error(`Cannot import ${path} in the wasm tier: it is outside the handler's directory`) };
  if (!/\.m?js$/.test(path)) return { error: new Error(`Cannot import ${path} in the wasm tier without esbuild: only .js and .mjs files load as they are`) };
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    return { error: new Error(`Cannot import ${path}: ${(e as Error).message}`) };
  }
}

const _LEVELS = new Set(["debug", "info", "warn", "error"]);
const _MAX_JOB_ROUNDS = 10_000;

/** One QuickJS sandbox. Create with {@link WasmSandbox.create}. */
export class WasmSandbox {
  #inst: QuickJSInstance;
  #rt: QuickJSRuntime;
  #ctx: QuickJSContext;
  #hooks: SandboxHooks;
  #api: QuickJSHandle | undefined;
  #deadline = 0;
  #interrupted = false;
  #oom = false;
  #dead: string | undefined;
  #depth = 0;

  private constructor(inst: QuickJSInstance, limits: SandboxLimits, hooks: SandboxHooks) {
    this.#inst = inst;
    this.#rt = inst.qjs.newRuntime();
    this.#hooks = hooks;
    this.adopt(hooks, limits);
    this.#rt.setInterruptHandler(() => {
      if (performance.now() <= this.#deadline) return false;
      if (!this.#interrupted) {
        // An interrupt is uncatchable, but an async function turns it into a rejection a loop can
        // catch and carry on. Starving the allocator stops every new call, so the next check lands
        // in the looping frame itself. The sandbox is discarded after this entry anyway.
        this.#rt.setMemoryLimit(1);
      }
      this.#interrupted = true;
      return true;
    });
    this.#ctx = this.#rt.newContext();
    this.#installHost();
  }

  /**
   * Create a sandbox and evaluate `code` (an ES module with no imports) in it.
   * @throws GuestError when the code throws while loading; SandboxInterruptedError / SandboxTrapError
   */
  static create(code: string, filename: string, limits: SandboxLimits, hooks: SandboxHooks, modules?: GuestModules): Promise<WasmSandbox> {
    return WasmSandbox.#made(limits, hooks, (sb) => {
      if (modules) sb.#rt.setModuleLoader((name) => _loadModule(modules, name), (base, req) => _resolveModule(modules, base, req));
      sb.#load(code, filename);
    });
  }

  /**
   * A sandbox with the prelude (`src/sandbox/quickjs/prelude.ts`, the guest bootstrap and SDK)
   * evaluated as the module `outpost-sdk:prelude`, for a handler's guest part to be loaded into
   * later ({@link adopt}, {@link loadPart}). Until adopted it reports to `hooks` (logs go nowhere).
   * @throws GuestError, SandboxInterruptedError, SandboxTrapError when the prelude does not evaluate
   */
  static prepare(prelude: string, limits: SandboxLimits, hooks: SandboxHooks): Promise<WasmSandbox> {
    return WasmSandbox.#made(limits, hooks, (sb) => sb.#evalModule(prelude, PRELUDE_MODULE));
  }

  /** A new sandbox that `fill` loads code into; disposed when that throws. */
  static async #made(limits: SandboxLimits, hooks: SandboxHooks, fill: (sb: WasmSandbox) => void): Promise<WasmSandbox> {
    const sb = new WasmSandbox(await newQuickJS(limits.memoryMb), limits, hooks);
    try {
      fill(sb);
    } catch (e) {
      sb.dispose();
      throw e;
    }
    return sb;
  }

  /** Hand a prepared sandbox to its owner: its hooks from now on, and the owner's limits. */
  adopt(hooks: SandboxHooks, limits: SandboxLimits): void {
    this.#hooks = hooks;
    this.#rt.setMemoryLimit(limits.memoryMb * 1_048_576);
    this.#rt.setMaxStackSize(limits.stackKb * 1_024);
  }

  /**
   * Evaluate a handler's guest part (it imports the prelude, already here) in a prepared sandbox.
   * @throws GuestError when the code throws while loading; SandboxInterruptedError / SandboxTrapError
   */
  loadPart(code: string, filename: string): void {
    this.#load(code, filename);
  }

  /** Whether the current entry was interrupted (what the guest reports then is not the handler's doing). */
  get interrupted(): boolean {
    return this.#interrupted;
  }

  /** Why the sandbox is no longer usable, or undefined while it is. */
  get dead(): string | undefined {
    return this.#dead;
  }

  /** Bytes of linear memory the sandbox holds now, and the most it may grow to. */
  memory(): { bytes: number; maxBytes: number } {
    return { bytes: this.#inst.memory.buffer.byteLength, maxBytes: this.#inst.maxBytes };
  }

  /**
   * Call a method of the guest's `__outpost` object with plain arguments (numbers, strings,
   * booleans, bytes), within the CPU budget, then run the jobs it queued.
   * @returns the method's result, dumped to a host value (a promise's settled value)
   * @throws GuestError, SandboxInterruptedError, SandboxTrapError
   */
  call(method: string, ...args: (number | string | boolean | Uint8Array)[]): unknown {
    let out: unknown;
    this.#enter(() => {
      const ctx = this.#ctx;
      const fn = ctx.getProp(this.#api!, method);
      const handles = args.map((a) =>
        typeof a === "number" ? ctx.newNumber(a)
        : typeof a === "string" ? ctx.newString(a)
        : typeof a === "boolean" ? (a ? ctx.true : ctx.false)
        : ctx.newArrayBuffer(new Uint8Array(a).buffer) // a copy: a Node Buffer's .slice() is a view of a shared pool
      );
      const r = ctx.callFunction(fn, this.#api!, ...handles);
      fn.dispose();
      for (const h of handles) if (h.alive && h !== ctx.true && h !== ctx.false) h.dispose();
      if (r.error) throw new GuestError(this.#errorData(r.error));
      out = r.value;
    });
    return this.#settle(out as QuickJSHandle);
  }

  /** Free the sandbox (its whole linear memory goes with the instance). */
  dispose(): void {
    this.#dead ??= "disposed";
    try {
      this.#api?.dispose();
      this.#ctx.dispose();
      this.#rt.dispose();
    } catch { /* a trapped instance cannot free itself: dropping it frees its memory */ }
  }

  /** Evaluate an ES module under `name`, within the budget, and wait for it (its jobs run). */
  #evalModule(code: string, name: string): void {
    let result: QuickJSHandle | undefined;
    this.#enter(() => {
      const r = this.#ctx.evalCode(code, name, { type: "module" });
      if (r.error) throw new GuestError(this.#errorData(r.error));
      result = r.value;
    });
    this.#settle(result!);
  }

  #load(code: string, filename: string): void {
    this.#evalModule(code, filename);
    const api = this.#ctx.getProp(this.#ctx.global, "__outpost");
    if (this.#ctx.typeof(api) !== "object") {
      api.dispose();
      throw new GuestError({ name: "TypeError", message: "the bundle did not start the wasm-tier guest" });
    }
    this.#api = api;
  }

  /** Dump a result (inside the budget: dumping runs guest code such as toJSON), then free it. */
  #settle(h: QuickJSHandle): unknown {
    let v: unknown;
    try {
      this.#enter(() => void (v = this.#settled(h)));
    } finally {
      if (h.alive) h.dispose();
    }
    return v;
  }

  /** A value, or a promise's settled value (after running jobs); rejections throw GuestError. */
  #settled(h: QuickJSHandle): unknown {
    const state = this.#ctx.getPromiseState(h);
    if (state.type === "pending") throw new GuestError({ name: "Error", message: "the guest's promise did not settle" });
    if (state.type === "rejected") throw new GuestError(this.#errorData(state.error));
    if (state.notAPromise) return this.#ctx.dump(h);
    const v = state.value;
    try {
      return this.#ctx.dump(v);
    } finally {
      v.dispose();
    }
  }

  /**
   * Run `body` inside the sandbox within the owner's CPU budget, then its pending jobs. A trap
   * (any host-level exception), an interrupt or an out-of-memory condition kills the sandbox.
   */
  #enter(body: () => void): void {
    if (this.#dead) throw new SandboxTrapError(`the sandbox is no longer usable (${this.#dead})`);
    const outer = this.#depth === 0;
    const start = performance.now();
    if (outer) {
      this.#deadline = start + Math.max(0, this.#hooks.budgetMs());
      this.#interrupted = false;
    }
    this.#depth++;
    let failure: Error | undefined;
    try {
      body();
      if (outer) this.#drain();
    } catch (e) {
      failure = e as Error;
    } finally {
      this.#depth--;
      if (outer) this.#hooks.charge(performance.now() - start);
    }
    if (!outer) {
      if (failure) throw failure;
      return;
    }
    if (this.#interrupted) throw this.#kill(new SandboxInterruptedError("interrupted: CPU budget used up"));
    if (this.#oom || (failure instanceof GuestError && _isOom(failure.data))) throw this.#kill(new SandboxTrapError("out of memory"));
    if (failure instanceof GuestError) throw failure;
    if (failure) throw this.#kill(new SandboxTrapError(`trapped: ${failure.name}: ${failure.message}`));
  }

  #drain(): void {
    for (let i = 0; i < _MAX_JOB_ROUNDS && !this.#interrupted && this.#rt.hasPendingJob(); i++) {
      const r = this.#rt.executePendingJobs();
      if (r.error) {
        // A job threw past every handler: only an interrupt, an out-of-memory or a host error does.
        const data = this.#errorData(r.error);
        if (_isOom(data)) this.#oom = true;
      } else r.value;
    }
  }

  #kill<E extends Error>(e: E): E {
    this.#dead = e.message;
    this.dispose();
    return e;
  }

  #errorData(h: QuickJSHandle): ErrorData {
    try {
      const d = this.#ctx.dump(h) as { name?: unknown; message?: unknown; stack?: unknown } | unknown;
      if (d && typeof d === "object" && "message" in d) {
        const o = d as { name?: unknown; message?: unknown; stack?: unknown };
        const out: ErrorData = { name: String(o.name ?? "Error"), message: String(o.message) };
        if (typeof o.stack === "string") out.stack = o.stack.slice(0, 4_000);
        return out;
      }
      return { name: "Error", message: String(d) };
    } catch {
      return { name: "InternalError", message: "out of memory" };
    } finally {
      h.dispose();
    }
  }

  #installHost(): void {
    const ctx = this.#ctx;
    const host = ctx.newObject();
    const call = ctx.newFunction("call", (idH, opH, subjectH, dataH, delayH) => {
      const id = ctx.typeof(idH) === "number" ? ctx.getNumber(idH) : 0;
      const op = ctx.getString(opH) === "emit" ? "emit" : "publish";
      const subject = ctx.getString(subjectH);
      const lt = ctx.getArrayBuffer(dataH);
      const data = new Uint8Array(lt.value); // copy out of the sandbox's memory
      lt.dispose();
      const deferred = ctx.newPromise();
      const settle = (err?: Error) => {
        if (this.#dead) return;
        try {
          this.#enter(() => {
            if (err) {
              const eh = ctx.newError({ name: err.name, message: err.message });
              deferred.reject(eh);
              eh.dispose();
            } else deferred.resolve();
          });
        } catch (e) {
          if (e instanceof SandboxInterruptedError || e instanceof SandboxTrapError) this.#hooks.fatal(e);
        } finally {
          if (deferred.alive) deferred.dispose();
        }
      };
      const delayMs = delayH && ctx.typeof(delayH) === "number" ? ctx.getNumber(delayH) : 0;
      this.#hooks.call(id, op, subject, data, delayMs > 0 ? delayMs : undefined).then(() => settle(), (e: Error) => settle(e));
      return deferred.handle;
    });
    const log = ctx.newFunction("log", (idH, levelH, msgH) => {
      const id = ctx.typeof(idH) === "number" ? ctx.getNumber(idH) : 0;
      const level = ctx.getString(levelH);
      this.#hooks.log(id, _LEVELS.has(level) ? (level as "info") : "info", ctx.getString(msgH).slice(0, MAX_LOG_LINE));
    });
    const settle = ctx.newFunction("settle", (idH, errH) => {
      this.#hooks.settle(ctx.getNumber(idH), errH && ctx.typeof(errH) === "string" ? ctx.getString(errH) : undefined);
    });
    ctx.setProp(host, "call", call);
    ctx.setProp(host, "log", log);
    ctx.setProp(host, "settle", settle);
    ctx.setProp(ctx.global, "__outpost_host", host);
    for (const h of [call, log, settle, host]) h.dispose();
  }
}

function _isOom(d: ErrorData): boolean {
  return d.name === "InternalError" && d.message === "out of memory";
}
