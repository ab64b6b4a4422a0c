/** Named errors that callers catch; across an isolate boundary check `name`, never `instanceof`. */

/** `nats-server` could not be found. The message is the whole explanation, for a person. */
export class NatsServerNotFoundError extends Error {
  override name = "NatsServerNotFoundError";
}

/** The embedded `nats-server` failed to start or become ready. */
export class NatsServerStartError extends Error {
  override name = "NatsServerStartError";
}

/** A handler module could not be built or loaded. */
export class HandlerLoadError extends Error {
  override name = "HandlerLoadError";
}

/** A handler did not settle within its `timeoutMs`. */
export class HandlerTimeoutError extends Error {
  override name = "HandlerTimeoutError";
}

/** The isolate running a handler died (uncaught error, exit, out of memory). */
export class IsolateCrashedError extends Error {
  override name = "IsolateCrashedError";
}

/** Invalid configuration given on the command line or in the environment. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The data an error turns into when it crosses an isolate or storage boundary. */
export interface ErrorData {
  name: string;
  message: string;
  stack?: string;
  /** The first frame in the handler author's own source (`/path/workers/x.ts:12:5`), when the stack names one. */
  at?: string;
}

/**
 * Turn anything thrown into {@link ErrorData}.
 * @param e the thrown value
 */
export function toErrorData(e: unknown): ErrorData {
  if (e instanceof Error) {
    return e.stack ? { name: e.name, message: e.message, stack: e.stack } : { name: e.name, message: e.message };
  }
  if (e && typeof e === "object" && "message" in e) {
    const o = e as { name?: unknown; message: unknown; stack?: unknown };
    const d: ErrorData = { name: String(o.name ?? "Error"), message: String(o.message) };
    if (typeof o.stack === "string") d.stack = o.stack;
    return d;
  }
  return { name: "Error", message: String(e) };
}
