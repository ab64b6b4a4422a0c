import { HandlerLoadError, HandlerTimeoutError, IsolateCrashedError } from "../../errors.ts";
import type { HandlerInfo } from "../../sdk/definition.ts";
import { spawnWorker, type WorkerHandle } from "../../runtime/worker.ts";
import { HandlerError, type Invocation, type Isolate, type IsolateOptions } from "../isolate.ts";
import { coalescing, unbulk } from "../coalesce.ts";
import { DEFAULT_OUTPUT_LIMITS, MAX_LOG_LINE, OutputBudget, type Verdict } from "../budget.ts";
import type { BatchFailure, HostToIsolate, IsolateToHost } from "../protocol.ts";

export { HandlerError, type CallHandler, type Invocation } from "../isolate.ts";

/** Options of {@link WorkerIsolate}. */
export type WorkerIsolateOptions = IsolateOptions;

type _Pending = { resolve(f: BatchFailure[]): void; reject(e: Error): void; timer: ReturnType<typeof setTimeout> | undefined };

// Time a handler gets to settle after its signal aborted before the isolate is terminated.
const _GRACE_MS = 100;

/** A handler running in its own worker isolate (worker_threads on Node, Web Worker on Deno and Bun). */
export class WorkerIsolate implements Isolate {
  #opts: WorkerIsolateOptions;
  #w: WorkerHandle | undefined;
  #pending = new Map<number, _Pending>();
  /** The message each pending invocation is for (log lines carry its seq and attempt). */
  #invocations = new Map<number, Invocation>();
  #next = 1;
  #dead = false;
  #send: ((m: HostToIsolate, transfer?: ArrayBuffer[]) => void) | undefined;
  #budget: OutputBudget;
  /** The handler's policy, once {@link start} resolved. */
  info: HandlerInfo | undefined;
  heapLimitEnforced = false;
  sandboxed = false;

  constructor(opts: WorkerIsolateOptions) {
    this.#opts = opts;
    this.#budget = new OutputBudget(opts.name, opts.limits);
  }

  /** Messages being handled right now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Start the worker and wait until the handler loaded.
   * @returns the handler's policy
   * @throws HandlerLoadError when the module throws at import, exports something else, or dies
   */
  async start(): Promise<HandlerInfo> {
    const w = await spawnWorker(this.#opts.url, {
      name: this.#opts.name,
      ...(this.#opts.memoryMb ? { memoryMb: this.#opts.memoryMb } : {}),
      ...(this.#opts.permissions ? { permissions: this.#opts.permissions } : {}),
    });
    this.#w = w;
    this.heapLimitEnforced = w.heapLimitEnforced;
    this.sandboxed = w.sandboxed;
    return await new Promise<HandlerInfo>((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => {
        if (ready) return;
        void this.terminate();
        reject(new HandlerLoadError(`Handler ${this.#opts.name} did not load within ${this.#opts.loadTimeoutMs ?? 10_000} ms`));
      }, this.#opts.loadTimeoutMs ?? 10_000);
      w.onExit((reason) => {
        this.#dead = true;
        if (!ready) {
          clearTimeout(timer);
          reject(new HandlerLoadError(`Handler ${this.#opts.name} failed to load: ${reason}`));
          return;
        }
        this.#failAll(new IsolateCrashedError(`Isolate of ${this.#opts.name} crashed: ${reason}`));
        this.#opts.onCrash(reason);
      });
      this.#send = coalescing<HostToIsolate>((m, t) => w.post(m, t));
      w.onMessage((raw) => unbulk<IsolateToHost>(raw, (m) => {
        switch (m.type) {
          case "ready":
            ready = true;
            clearTimeout(timer);
            this.info = m.info;
            this.#post({ type: "limits", name: this.#opts.name, limits: this.#opts.limits ?? DEFAULT_OUTPUT_LIMITS });
            resolve(m.info);
            return;
          case "load-error":
            clearTimeout(timer);
            void this.terminate();
            reject(new HandlerLoadError(`Handler ${this.#opts.name} failed to load: ${m.error.name}: ${m.error.message}`));
            return;
          case "done":
            return this.#settle(m.id, undefined, m.failures);
          case "failed":
            return this.#settle(m.id, new HandlerError(m.error, m.permanent));
          case "log": {
            const message = String(m.message).slice(0, MAX_LOG_LINE);
            if (this.#judge(m.id, this.#budget.log(m.id, message.length))) this.#opts.onLog(m.level, message, this.#invocations.get(m.id));
            return;
          }
          case "exit":
            return void this.#crash(`exit(${m.code}) attempt`);
          case "call": {
            const v = this.#budget.output(m.id, m.data?.byteLength ?? 0);
            if (!this.#judge(m.id, v)) {
              const error = v.type === "fail" ? { name: v.error.name, message: v.error.message } : { name: "OutputLimitError", message: "The attempt this output belongs to is over; it was not stored" };
              return this.#post({ type: "reply", callId: m.callId, error });
            }
            return void this.#opts.onCall(m.op, m.subject, m.data, m.delayMs ? { delayMs: m.delayMs } : undefined, this.#invocations.get(m.id)).then(
              () => this.#post({ type: "reply", callId: m.callId }),
              (e: Error) => this.#post({ type: "reply", callId: m.callId, error: { name: e.name, message: e.message } }),
            );
          }
        }
      }));
    });
  }

  /**
   * Handle one message.
   * @param timeoutMs after this the handler's signal aborts; shortly after, the isolate is terminated
   * @throws HandlerError, HandlerTimeoutError or IsolateCrashedError
   */
  async invoke(inv: Invocation, timeoutMs: number): Promise<void> {
    // Copy (not .slice(), which is a view for a Node Buffer): a nats message's data views the
    // socket's read buffer, shared with other messages, which must not be cloned or detached.
    const data = new Uint8Array(inv.data);
    const sensor = {
      ...(inv.sensor === undefined ? {} : { sensor: inv.sensor }),
      ...(inv.traceparent === undefined ? {} : { traceparent: inv.traceparent }),
      ...(inv.tracestate === undefined ? {} : { tracestate: inv.tracestate }),
    };
    await this.#call(timeoutMs, (id) => (this.#invocations.set(id, inv), [{ type: "invoke", id, subject: inv.subject, seq: inv.seq, attempt: inv.attempt, data, ...sensor, timeoutMs }, [data.buffer]]));
  }

  /**
   * Hand several messages to `handleBatch` at once.
   * @returns the readings the handler reported failed with `ctx.fail` (the others succeeded)
   * @throws like {@link invoke}, for the batch as a whole
   */
  async invokeBatch(items: Invocation[], timeoutMs: number): Promise<BatchFailure[]> {
    const copies = items.map((i) => ({ subject: i.subject, seq: i.seq, attempt: i.attempt, data: new Uint8Array(i.data), ...(i.sensor === undefined ? {} : { sensor: i.sensor }) }));
    return await this.#call(timeoutMs, (id) => [{ type: "invoke-batch", id, items: copies, timeoutMs }, copies.map((c) => c.data.buffer)]);
  }

  #call(timeoutMs: number, message: (id: number) => [HostToIsolate, ArrayBuffer[]]): Promise<BatchFailure[]> {
    if (this.#dead || !this.#w) return Promise.reject(new IsolateCrashedError(`Isolate of ${this.#opts.name} is not running`));
    const id = this.#next++;
    return new Promise<BatchFailure[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new HandlerTimeoutError(`Handler ${this.#opts.name} did not finish within ${timeoutMs} ms`);
        this.#settle(id, err);
        // A handler that ignores its signal keeps the isolate busy: replace the isolate. The owner
        // hears of it at once, before a retry of the same message could reach this dead isolate.
        this.#failAll(new IsolateCrashedError(`Isolate of ${this.#opts.name} restarted after a timeout`));
        this.#dead = true;
        this.#opts.onCrash("timeout");
        void this.terminate();
      }, timeoutMs + _GRACE_MS);
      this.#pending.set(id, { resolve, reject, timer });
      const [m, transfer] = message(id);
      this.#budget.open(id, m.type === "invoke-batch" ? m.items.length : 1);
      this.#post(m, transfer);
    });
  }

  /**
   * Act on the budget's verdict for one output or log line of invocation `id`.
   * @returns whether it may go out
   */
  #judge(id: number, v: Verdict): boolean {
    if (v.type === "ok") return true;
    if (v.type === "fail") {
      this.#settle(id, new HandlerError({ name: v.error.name, message: v.error.message }, false));
      this.#post({ type: "cancel", id });
    } else if (v.type === "flood") {
      void this.#crash("it kept sending outputs for messages whose attempts were over");
    }
    return false;
  }

  /** Abort every running handler's signal (used on shutdown). */
  cancelAll(): void {
    for (const id of this.#pending.keys()) this.#post({ type: "cancel", id });
  }

  /** Stop the worker; pending invocations fail with IsolateCrashedError. */
  async terminate(): Promise<void> {
    this.#dead = true;
    this.#failAll(new IsolateCrashedError(`Isolate of ${this.#opts.name} was stopped`));
    await this.#w?.terminate();
  }

  async #crash(reason: string): Promise<void> {
    if (this.#dead) return;
    this.#failAll(new IsolateCrashedError(`Isolate of ${this.#opts.name} crashed: ${reason}`));
    this.#dead = true;
    this.#opts.onCrash(reason);
    await this.terminate();
  }

  #post(m: HostToIsolate, transfer?: ArrayBuffer[]): void {
    if (!this.#dead) this.#send?.(m, transfer);
  }

  #settle(id: number, err?: Error, failures: BatchFailure[] = []): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    this.#invocations.delete(id);
    this.#budget.close(id);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(failures);
  }

  #failAll(err: Error): void {
    for (const id of [...this.#pending.keys()]) this.#settle(id, err);
  }
}
