import { topicOf } from "../broker/subjects.ts";
import { parseTraceparent } from "../util/trace.ts";
import { PermanentError, type Context, type HandlerLog } from "../sdk/handler.ts";

/** The message a `ctx` is for. */
export interface ContextItem {
  subject: string;
  seq: number;
  attempt: number;
  /** The authenticated sensor that posted the reading. */
  sensor?: string | undefined;
  /** The handler's span (W3C trace context). */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** What a tier gives the builder: how an output leaves the isolate, and this message's log. */
export interface ContextIo {
  call(op: "publish" | "emit", subject: string, value: unknown, delayMs?: number): Promise<void>;
  log: HandlerLog;
}

/**
 * The `ctx` of one message, the same in every tier (the worker bootstrap and the QuickJS guest
 * both call this): ids, subject and topic, attempt, signal, outputs, log, `Permanent`.
 */
export function makeContext(item: ContextItem, signal: AbortSignal, io: ContextIo): Context {
  return {
    id: `INGEST:${item.seq}`,
    seq: item.seq,
    subject: item.subject,
    topic: topicOf(item.subject),
    attempt: item.attempt,
    sensor: item.sensor,
    trace: _trace(item),
    signal,
    publish: (subject, value) => io.call("publish", subject, value),
    emit: (topic, value, opts) => io.call("emit", topic, value, opts?.delayMs),
    log: io.log,
    Permanent: PermanentError,
  };
}

/** `ctx.trace` from the handler span's `traceparent`. */
function _trace(item: ContextItem): Context["trace"] {
  const t = parseTraceparent(item.traceparent);
  if (!t) return undefined;
  return { traceId: t.traceId, spanId: t.spanId, traceparent: item.traceparent!, ...(item.tracestate ? { tracestate: item.tracestate } : {}) };
}

type _Schema = { "~standard": { validate(v: unknown): unknown } };

/**
 * Parse a reading again with the handler's schema before `handle` sees it. It passed this schema
 * at ingest; parsing again yields the schema's output (transforms, defaults), and a reading stored
 * under an older schema fails for good.
 */
export async function handlerReading(schema: _Schema | undefined, reading: unknown): Promise<unknown> {
  if (!schema) return reading;
  const r = (await schema["~standard"].validate(reading)) as { value?: unknown; issues?: { message: string }[] };
  if (r.issues) throw new PermanentError(`Reading no longer matches the schema: ${r.issues.map((i) => i.message).join("; ")}`);
  return r.value;
}

/** A level of a handler's log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * Build `ctx.log` (callable for info, with `.debug/.info/.warn/.error`) on top of one function
 * that carries a formatted line to the host. Shared by the worker and the wasm sandboxes.
 */
export function makeHandlerLog(emit: (level: LogLevel, message: string) => void): HandlerLog {
  const at = (level: LogLevel) => (...args: unknown[]) => emit(level, args.map((a) => (typeof a === "string" ? a : inspect(a))).join(" "));
  const log = at("info") as HandlerLog;
  log.debug = at("debug");
  log.info = at("info");
  log.warn = at("warn");
  log.error = at("error");
  return log;
}

/** A value as one readable line: errors by name and message, bytes by length, big integers with `n`. */
export function inspect(v: unknown): string {
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Uint8Array ? `<${x.length} bytes>` : x));
  } catch {
    return String(v);
  }
}
