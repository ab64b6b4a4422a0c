/**
 * The code that runs inside a handler's worker isolate, bundled with the handler by the host.
 * It loads the handler, reports its policy, and runs `handle` for each invoke message.
 */
import { decodeCbor, encodeCbor } from "../../codec/cbor.ts";
import { toErrorData } from "../../errors.ts";
import { checkDefinition, handlerInfo } from "../../sdk/definition.ts";
import { hostPort } from "../../runtime/isolate_port.ts";
import type { BatchContext, Context, HandlerLog } from "../../sdk/handler.ts";
import type { BatchFailure, HostToIsolate, IsolateToHost } from "../protocol.ts";
import { handlerReading, makeContext, makeHandlerLog } from "../context.ts";
import { coalescing, unbulk } from "../coalesce.ts";
import { MAX_LOG_LINE, OutputBudget, OutputLimitError } from "../budget.ts";

type _Io = {
  send: (m: IsolateToHost) => void;
  /** The same caps the host enforces, counted here first so that a flood is never posted. */
  budget: () => OutputBudget;
  /** An output of invocation `id`. */
  call: (id: number, op: "publish" | "emit", s: string, v: unknown, delayMs?: number) => Promise<void>;
  /** `ctx.log` of invocation `id`. */
  log: (id: number) => HandlerLog;
};

type _Def = {
  handle(r: unknown, ctx: Context): unknown;
  handleBatch?(r: unknown[], ctx: BatchContext): unknown;
  schema?: { "~standard": { validate(v: unknown): unknown } };
};

/**
 * Load the handler module and serve the host.
 * @param load imports the handler module
 */
export async function runIsolate(load: () => Promise<{ default?: unknown }>): Promise<void> {
  const port = await hostPort();
  // Start-up and exit reports go at once; the traffic of running messages is coalesced.
  const now = (m: IsolateToHost, transfer?: ArrayBuffer[]) => port.post(m, transfer);
  const later = coalescing<IsolateToHost>((m, t) => port.post(m, t));
  const send = (m: IsolateToHost, transfer?: ArrayBuffer[]) =>
    m.type === "ready" || m.type === "load-error" || m.type === "exit" ? now(m, transfer) : later(m, transfer);
  _trapExit(send);
  _captureConsole(send);
  let def: _Def;
  try {
    const mod = await load();
    const problems = checkDefinition(mod.default);
    if (problems.length) {
      send({ type: "load-error", error: { name: "TypeError", message: `Invalid handler definition: ${problems.join("; ")}` } });
      return;
    }
    if ((mod.default as { isolation?: unknown }).isolation === "wasm") {
      // The host runs wasm-tier handlers in QuickJS; reaching a worker means its tier was misjudged.
      send({ type: "load-error", error: { name: "TypeError", message: 'A handler with isolation "wasm" cannot run in a worker' } });
      return;
    }
    def = mod.default as _Def;
  } catch (e) {
    send({ type: "load-error", error: toErrorData(e) });
    return;
  }
  const calls = new Map<number, { resolve(): void; reject(e: Error): void }>();
  const running = new Map<number, AbortController>();
  let nextCall = 1;
  let budget = new OutputBudget("(loading)", { maxOutputs: Infinity, maxOutputBytes: Infinity, maxLogLines: Infinity, maxLogBytes: Infinity });
  const call = (id: number, op: "publish" | "emit", subject: string, value: unknown, delayMs?: number) =>
    new Promise<void>((resolve, reject) => {
      const data = encodeCbor(value);
      const v = budget.output(id, data.byteLength);
      if (v.type !== "ok") return reject(v.type === "fail" ? v.error : budget.failure(id) ?? new OutputLimitError("The attempt this output belongs to is over"));
      const callId = nextCall++;
      calls.set(callId, { resolve, reject });
      const m: IsolateToHost = { type: "call", callId, id, op, subject, data };
      if (delayMs) m.delayMs = delayMs;
      send(m, [data.buffer as ArrayBuffer]);
    });
  const log = (id: number) => makeHandlerLog((level, message) => {
    const line = message.slice(0, MAX_LOG_LINE);
    if (budget.log(id, line.length).type === "ok") send({ type: "log", id, level, message: line });
  });
  port.onMessage((raw) => unbulk<HostToIsolate>(raw, (m) => {
    if (m.type === "reply") {
      const c = calls.get(m.callId);
      calls.delete(m.callId);
      if (m.error) c?.reject(Object.assign(new Error(m.error.message), { name: m.error.name }));
      else c?.resolve();
    } else if (m.type === "limits") {
      budget = new OutputBudget(m.name, m.limits);
    } else if (m.type === "cancel") {
      running.get(m.id)?.abort(new DOMException("Cancelled by the host", "AbortError"));
    } else if (m.type === "invoke") {
      void _invoke(def, m, running, { send, call, log, budget: () => budget });
    } else if (m.type === "invoke-batch") {
      void _invokeBatch(def, m, running, { send, call, log, budget: () => budget });
    }
  }));
  send({ type: "ready", info: handlerInfo(def as unknown as Record<string, unknown>) });
  // Deno's global setTimeout comes from its Node layer, loaded the first time it is read: 10 ms in
  // a new worker, which the first message would wait for. Read it now, while the host sets up the
  // handler's consumer.
  if ("Deno" in globalThis) queueMicrotask(() => void Reflect.get(globalThis, "setTimeout"));
}

type _Item = { subject: string; seq: number; attempt: number; data: Uint8Array; sensor?: string; traceparent?: string; tracestate?: string };

/**
 * Run one invocation: a signal that aborts at its deadline, "done" (with batch failures) when
 * `body` resolves, "failed" when it throws.
 */
async function _run(
  m: { id: number; timeoutMs: number; type: "invoke" | "invoke-batch"; items?: unknown[] },
  running: Map<number, AbortController>,
  io: _Io,
  body: (signal: AbortSignal) => Promise<BatchFailure[] | undefined>,
): Promise<void> {
  const ac = new AbortController();
  running.set(m.id, ac);
  const budget = io.budget();
  budget.open(m.id, m.items?.length ?? 1);
  const timer = setTimeout(() => ac.abort(new DOMException(`Timed out after ${m.timeoutMs} ms`, "TimeoutError")), m.timeoutMs);
  try {
    const failures = await body(ac.signal);
    // A cap passed fails the attempt even if the handler caught the rejection it got.
    const over = budget.failure(m.id);
    if (over) throw over;
    io.send(failures ? { type: "done", id: m.id, failures } : { type: "done", id: m.id });
  } catch (e) {
    const error = toErrorData(budget.failure(m.id) ?? e);
    io.send({ type: "failed", id: m.id, error, permanent: error.name === "PermanentError" });
  } finally {
    clearTimeout(timer);
    budget.close(m.id);
    running.delete(m.id);
  }
}

/** The `ctx` of one message (`id`: its invocation). */
function _ctx(id: number, item: _Item, signal: AbortSignal, io: _Io): Context {
  return makeContext(item, signal, { call: (op, subject, value, delayMs) => io.call(id, op, subject, value, delayMs), log: io.log(id) });
}

/** Decode a reading and parse it with the handler's schema. */
async function _parse(def: _Def, data: Uint8Array): Promise<unknown> {
  return await handlerReading(def.schema, decodeCbor(data));
}

async function _invoke(def: _Def, m: Extract<HostToIsolate, { type: "invoke" }>, running: Map<number, AbortController>, io: _Io): Promise<void> {
  await _run(m, running, io, async (signal) => {
    await def.handle(await _parse(def, m.data), _ctx(m.id, m, signal, io));
    return undefined;
  });
}

async function _invokeBatch(def: _Def, m: Extract<HostToIsolate, { type: "invoke-batch" }>, running: Map<number, AbortController>, io: _Io): Promise<void> {
  await _run(m, running, io, async (signal) => {
    const failures = new Map<number, BatchFailure>();
    const readings: unknown[] = [];
    for (const [index, item] of m.items.entries()) {
      try {
        readings.push(await _parse(def, item.data));
      } catch (e) {
        readings.push(undefined);
        failures.set(index, { index, error: toErrorData(e), permanent: true });
      }
    }
    // Readings that failed their schema are left out of the batch the handler sees.
    const keep = m.items.map((_item, i) => i).filter((i) => !failures.has(i));
    if (!keep.length) return [...failures.values()];
    const ctx: BatchContext = {
      ..._ctx(m.id, m.items[keep[0]!]!, signal, io),
      items: keep.map((k) => {
        const i = m.items[k]!;
        return { id: `INGEST:${i.seq}`, seq: i.seq, subject: i.subject, attempt: i.attempt, sensor: i.sensor };
      }),
      fail: (index, error) => {
        const orig = keep[index];
        if (!Number.isInteger(index) || orig === undefined) throw new RangeError(`ctx.fail: no reading ${index} in a batch of ${keep.length}`);
        const data = toErrorData(error);
        failures.set(orig, { index: orig, error: data, permanent: data.name === "PermanentError" });
      },
    };
    await def.handleBatch!(keep.map((k) => readings[k]), ctx);
    return [...failures.values()];
  });
}

/**
 * `console.*` in a handler is its log, attributed like `ctx.log` (outside any message: console
 * calls cannot be tied to one), not raw output on the host's stdout.
 */
function _captureConsole(send: (m: IsolateToHost) => void): void {
  const log = makeHandlerLog((level, message) => send({ type: "log", id: 0, level, message: message.slice(0, MAX_LOG_LINE) }));
  const c = globalThis.console as unknown as Record<string, unknown>;
  const to: Record<string, (...a: unknown[]) => void> = {
    log: log.info, info: log.info, debug: log.debug, trace: log.debug, warn: log.warn, error: log.error,
  };
  for (const [k, f] of Object.entries(to)) {
    try {
      c[k] = f;
    } catch { /* a frozen console keeps its own output */ }
  }
}

/**
 * `process.exit` / `Deno.exit` in a worker would end it silently on some runtimes (Deno): report
 * the attempt so the host restarts the isolate at once, then stop the caller.
 */
function _trapExit(send: (m: IsolateToHost) => void): void {
  const g = globalThis as unknown as Record<string, Record<string, unknown> | undefined>;
  // Node ends a worker through process.exit after an uncaught exception: let that one pass.
  let dying = false;
  const trapIn = (holder: Record<string, unknown> | undefined) => {
    if (!holder || typeof holder.exit !== "function") return;
    const original = holder.exit as (code?: number) => never;
    const trap = (code?: number) => {
      if (dying) return original.call(holder, code);
      send({ type: "exit", code: Number(code ?? 0) });
      throw new Error(`exit(${code ?? 0}) called in a handler`);
    };
    try {
      Object.defineProperty(holder, "exit", { value: trap, configurable: true, writable: true });
    } catch { /* frozen: the runtime's own exit handling applies */ }
  };
  const lazy = g.Deno ? Object.getOwnPropertyDescriptor(globalThis, "process") : undefined;
  if (lazy?.get && lazy.configurable) {
    // Deno loads its Node layer the first time `process` is read (30-odd ms of a worker's start):
    // trap its exit then, not at start, so a handler that never reads it never waits for it.
    trapIn(g.Deno);
    const enumerable = lazy.enumerable ?? true;
    const settle = (v: unknown) => Object.defineProperty(globalThis, "process", { value: v, configurable: true, writable: true, enumerable });
    Object.defineProperty(globalThis, "process", {
      configurable: true,
      enumerable,
      get() {
        const p = lazy.get!.call(globalThis) as Record<string, unknown> | undefined;
        settle(p);
        trapIn(p);
        return p;
      },
      set: settle,
    });
    return;
  }
  const proc = g.process as { on?(e: string, f: () => void): void } | undefined;
  proc?.on?.("uncaughtExceptionMonitor", () => (dying = true));
  for (const holder of [g.process, g.Deno]) trapIn(holder);
}
