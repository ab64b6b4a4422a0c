import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { HandlerLoadError, HandlerTimeoutError, IsolateCrashedError, type ErrorData } from "../../errors.ts";
import { DEFAULTS, WASM_DEFAULTS, type HandlerInfo } from "../../sdk/definition.ts";
import { HandlerError, type Invocation, type Isolate, type IsolateOptions } from "../isolate.ts";
import { OutputBudget, OutputLimitError, type Verdict } from "../budget.ts";
import { keepSpare, preparedSandbox } from "./spare.ts";
import { GuestError, SandboxInterruptedError, SandboxTrapError, WASM_LOAD_CPU_MS, WasmSandbox, type GuestModules, type SandboxHooks } from "./sandbox.ts";

/** Options of {@link WasmIsolate}. */
export interface WasmIsolateOptions extends IsolateOptions {
  /** The sandbox bundle built by `buildHandler` (`BuiltHandler.guestUrl`). */
  guestUrl: URL;
  /** Native stack limit in KiB (default from the definition, else 192). */
  stackKb?: number | undefined;
  /** CPU ms per message (default from the definition, else 1000). */
  cpuMs?: number | undefined;
  /** Keep the handler in the wasm tier whatever its definition says (`--isolation wasm`). */
  force?: boolean | undefined;
  /** What the guest may import, when its bundle is not self-contained (built without esbuild). */
  guestModules?: GuestModules | undefined;
  /** The guest as prelude + the handler's part (`BuiltHandler.guestSplit`): started in a prepared sandbox. */
  guestSplit?: { part: string; prelude: string } | undefined;
}

type _Pending = {
  resolve(): void;
  reject(e: Error): void;
  cpuLeft: number;
  timers: ReturnType<typeof setTimeout>[];
  inv?: Invocation;
};

// As in the worker tier: time a handler gets after its signal aborted before the sandbox is replaced.
const _GRACE_MS = 100;

/**
 * A handler running in a wasm-tier sandbox: QuickJS compiled to WebAssembly, in its own linear
 * memory, on the host's thread. Memory, stack and CPU per message are capped on every runtime;
 * the handler can reach nothing but `ctx`. A sandbox that used up its CPU budget, trapped or ran
 * out of memory is discarded (the dispatcher rebuilds it); its state between messages goes with it.
 */
export class WasmIsolate implements Isolate {
  #opts: WasmIsolateOptions;
  #sb: WasmSandbox | undefined;
  #pending = new Map<number, _Pending>();
  #next = 1;
  #dead = false;
  #ready = false;
  #cpuMs: number;
  #budget: OutputBudget;
  /** The handler's policy, once {@link start} resolved. */
  info: HandlerInfo | undefined;
  readonly heapLimitEnforced = true;
  readonly sandboxed = true;

  constructor(opts: WasmIsolateOptions) {
    this.#opts = opts;
    this.#cpuMs = opts.cpuMs ?? WASM_DEFAULTS.cpuMs;
    this.#budget = new OutputBudget(opts.name, opts.limits);
  }

  /**
   * A handler written for the worker tier, held in the wasm tier by the operator: its worker-only
   * features are refused, its limits become the wasm tier's (a `memoryMb` it set is kept).
   */
  #forced(info: HandlerInfo): HandlerInfo {
    const worker = [info.batch ? "`batch`" : "", info.permissions ? "`permissions`" : ""].filter(Boolean);
    if (worker.length) {
      this.#sb?.dispose();
      throw new HandlerLoadError(
        `Handler ${this.#opts.name} uses ${worker.join(" and ")}, which the wasm tier does not offer, and this host runs every handler in the wasm tier (--isolation wasm)`,
      );
    }
    return {
      ...info,
      isolation: "wasm",
      memoryMb: info.memoryMb === DEFAULTS.memoryMb ? WASM_DEFAULTS.memoryMb : info.memoryMb,
      stackKb: WASM_DEFAULTS.stackKb,
      cpuMs: WASM_DEFAULTS.cpuMs,
    };
  }

  /** Messages being handled right now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Bytes of linear memory the sandbox holds now and may grow to (undefined when not running). */
  memory(): { bytes: number; maxBytes: number } | undefined {
    return this.#sb?.memory();
  }

  /**
   * Create the sandbox, evaluate the handler's bundle in it and read its definition.
   * @returns the handler's policy (whatever its `isolation`: the caller decides what to run it in)
   * @throws HandlerLoadError when the module throws, exports something else, or exceeds a limit
   */
  async start(): Promise<HandlerInfo> {
    const memoryMb = this.#opts.memoryMb ?? WASM_DEFAULTS.memoryMb;
    const stackKb = this.#opts.stackKb ?? WASM_DEFAULTS.stackKb;
    let info = await this.#create(memoryMb, stackKb);
    if (this.#opts.force && info.isolation !== "wasm") info = this.#forced(info);
    if (info.isolation === "wasm" && (info.memoryMb !== memoryMb || (info.stackKb ?? WASM_DEFAULTS.stackKb) !== stackKb)) {
      // Limits are part of the definition, known only once it is loaded: start again with them.
      this.#sb?.dispose();
      info = await this.#create(info.memoryMb, info.stackKb ?? WASM_DEFAULTS.stackKb);
      if (this.#opts.force && info.isolation !== "wasm") info = this.#forced(info);
    }
    this.#cpuMs = info.cpuMs ?? this.#cpuMs;
    this.info = info;
    this.#ready = true;
    const split = this.#split;
    if (split && info.isolation === "wasm") keepSpare(split.prelude, info.memoryMb);
    return info;
  }

  /** The guest as prelude + part, when built so (a guest loaded through `guestModules` never is). */
  get #split(): { part: string; prelude: string } | undefined {
    return this.#opts.guestModules ? undefined : this.#opts.guestSplit;
  }

  async #create(memoryMb: number, stackKb: number): Promise<HandlerInfo> {
    const name = this.#opts.name;
    const split = this.#split;
    try {
      if (split) {
        // Prepared ahead (spare.ts): only the handler's own part is evaluated here.
        const part = await readFile(split.part, "utf8");
        this.#sb = await preparedSandbox(split.prelude, { memoryMb, stackKb }, this.#hooks());
        this.#sb.loadPart(part, split.part);
      } else {
        const code = await readFile(fileURLToPath(this.#opts.guestUrl), "utf8");
        // The bundle's path as the module name: its frames are mapped back to the author's source.
        this.#sb = await WasmSandbox.create(code, fileURLToPath(this.#opts.guestUrl), { memoryMb, stackKb }, this.#hooks(), this.#opts.guestModules);
      }
      const d = JSON.parse(this.#sb.call("describe") as string) as { info?: HandlerInfo; error?: ErrorData };
      if (d.error) throw new GuestError(d.error);
      return d.info!;
    } catch (e) {
      this.#sb?.dispose();
      this.#dead = true;
      const why = e instanceof GuestError ? e.message : e instanceof SandboxInterruptedError
        ? `its module ran longer than ${WASM_LOAD_CPU_MS} ms of CPU`
        : `${(e as Error).name}: ${(e as Error).message}`;
      throw new HandlerLoadError(`Handler ${name} failed to load: ${why}`, { cause: e });
    }
  }

  /**
   * Handle one message.
   * @param timeoutMs wall-clock deadline: the signal aborts then, and the sandbox is replaced shortly after
   * @throws HandlerError, HandlerTimeoutError (deadline or CPU budget) or IsolateCrashedError
   */
  invoke(inv: Invocation, timeoutMs: number): Promise<void> {
    const sb = this.#sb;
    if (this.#dead || !sb) return Promise.reject(new IsolateCrashedError(`Isolate of ${this.#opts.name} is not running`));
    const id = this.#next++;
    const name = this.#opts.name;
    const done = new Promise<void>((resolve, reject) => {
      const timers = [
        setTimeout(() => this.#guard(() => sb.call("cancel", id, true)), timeoutMs),
        setTimeout(() => {
          this.#settle(id, new HandlerTimeoutError(`Handler ${name} did not finish within ${timeoutMs} ms`));
          this.#crash(new IsolateCrashedError(`Isolate of ${name} restarted after a timeout`), "timeout");
        }, timeoutMs + _GRACE_MS),
      ];
      this.#pending.set(id, { resolve, reject, cpuLeft: this.#cpuMs, timers, inv });
      this.#budget.open(id);
    });
    this.#guard(() => sb.call("invoke", id, inv.subject, inv.seq, inv.attempt, inv.data, inv.sensor ?? "", inv.traceparent ?? "", inv.tracestate ?? ""));
    return done;
  }

  /** Abort every running handler's signal (shutdown). */
  cancelAll(): void {
    const sb = this.#sb;
    if (sb) for (const id of [...this.#pending.keys()]) this.#guard(() => sb.call("cancel", id, false));
  }

  /** Discard the sandbox; pending invocations fail with IsolateCrashedError. */
  async terminate(): Promise<void> {
    this.#dead = true;
    this.#failAll(new IsolateCrashedError(`Isolate of ${this.#opts.name} was stopped`));
    this.#sb?.dispose();
    this.#sb = undefined;
  }

  #hooks(): SandboxHooks {
    return {
      call: (id, op, subject, data, delayMs) => {
        const v = this.#budget.output(id, data.byteLength);
        if (!this.#judge(id, v)) {
          return Promise.reject(v.type === "fail" ? v.error : new OutputLimitError("The attempt this output belongs to is over; it was not stored"));
        }
        return this.#opts.onCall(op, subject, data, delayMs ? { delayMs } : undefined, this.#pending.get(id)?.inv);
      },
      log: (id, level, message) => {
        if (this.#judge(id, this.#budget.log(id, message.length))) this.#opts.onLog(level, message, this.#pending.get(id)?.inv);
      },
      settle: (id, error) => {
        if (this.#sb?.interrupted) return; // the CPU budget ran out: reported when the entry ends
        if (!error) return this.#settle(id);
        const e = JSON.parse(error) as ErrorData & { permanent?: boolean };
        const data: ErrorData = e.stack ? { name: e.name, message: e.message, stack: e.stack } : { name: e.name, message: e.message };
        if (data.name === "InternalError" && data.message === "out of memory") {
          // Caught and reported by the guest, but the heap is exhausted: discard the sandbox after this entry.
          this.#settle(id, new IsolateCrashedError(`Isolate of ${this.#opts.name} crashed: out of memory (memoryMb ${this.info?.memoryMb})`));
          setTimeout(() => this.#crash(new IsolateCrashedError(`Isolate of ${this.#opts.name} crashed: out of memory`), "out of memory"), 0);
          return;
        }
        this.#settle(id, new HandlerError(data, e.permanent === true));
      },
      budgetMs: () => {
        if (!this.#ready) return WASM_LOAD_CPU_MS;
        let left = this.#cpuMs;
        for (const p of this.#pending.values()) left = Math.min(left, p.cpuLeft);
        return left;
      },
      charge: (ms) => {
        for (const p of this.#pending.values()) p.cpuLeft -= ms;
      },
      fatal: (e) => this.#fatal(e),
    };
  }

  /** Act on the budget's verdict for one output or log line; returns whether it may go out. */
  #judge(id: number, v: Verdict): boolean {
    if (v.type === "ok") return true;
    if (v.type === "fail") {
      this.#settle(id, new HandlerError({ name: v.error.name, message: v.error.message }, false));
      const sb = this.#sb;
      // Deferred: this runs inside the sandbox's own call into the host.
      if (sb) setTimeout(() => this.#guard(() => sb.call("cancel", id, false)), 0);
    } else if (v.type === "flood") {
      setTimeout(() => this.#crash(new IsolateCrashedError(`Isolate of ${this.#opts.name} crashed: it kept sending outputs for messages whose attempts were over`), "output flood"), 0);
    }
    return false;
  }

  /** Run an entry into the sandbox; a sandbox that dies in it takes the isolate with it. */
  #guard(fn: () => unknown): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof SandboxInterruptedError || e instanceof SandboxTrapError) this.#fatal(e);
      else this.#crash(new IsolateCrashedError(`Isolate of ${this.#opts.name} crashed: ${(e as Error).message}`), (e as Error).message);
    }
  }

  #fatal(e: SandboxInterruptedError | SandboxTrapError): void {
    const name = this.#opts.name;
    if (e instanceof SandboxInterruptedError) {
      for (const [id, p] of [...this.#pending]) {
        if (p.cpuLeft <= 0) this.#settle(id, new HandlerTimeoutError(`Handler ${name} used up its CPU budget of ${this.#cpuMs} ms (interrupted)`));
      }
      return this.#crash(new IsolateCrashedError(`Isolate of ${name} restarted after another message used up its CPU budget`), "timeout");
    }
    const reason = e.message === "out of memory" ? `out of memory (memoryMb ${this.info?.memoryMb})` : e.message;
    this.#crash(new IsolateCrashedError(`Isolate of ${name} crashed: ${reason}`), reason);
  }

  /** Fail what is pending, discard the sandbox and tell the owner (once). */
  #crash(err: IsolateCrashedError, reason: string): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#failAll(err);
    this.#sb?.dispose();
    this.#sb = undefined;
    if (this.#ready) this.#opts.onCrash(reason);
  }

  #settle(id: number, err?: Error): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    this.#budget.close(id);
    for (const t of p.timers) clearTimeout(t);
    if (err) p.reject(err);
    else p.resolve();
  }

  #failAll(err: Error): void {
    for (const id of [...this.#pending.keys()]) this.#settle(id, err);
  }
}
