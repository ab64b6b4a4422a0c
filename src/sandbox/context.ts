import type { HandlerLog } from "../sdk/handler.ts";

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
