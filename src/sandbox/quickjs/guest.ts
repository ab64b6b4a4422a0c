/**
 * The code that runs inside a wasm-tier sandbox (QuickJS), bundled before the handler by
 * `buildHandler`. It takes the host's three functions, installs the few standard globals a handler
 * may expect (AbortController, TextEncoder/TextDecoder, console), and serves `__outpost` to the
 * host: describe, invoke, cancel, validate. Payloads and ctx values cross as CBOR bytes.
 * @module
 */
import { toErrorData } from "../../errors.ts";
import { checkDefinition, handlerInfo } from "../../sdk/definition.ts";
import type { Context } from "../../sdk/handler.ts";
import { cborDecode, cborEncode, utf8Decode, utf8Encode } from "../../codec/cbor_data.ts";
import { installGuestGlobals, type GuestAbortController } from "./guest_globals.ts";
import { handlerReading, makeContext, makeHandlerLog } from "../context.ts";

/** What the host installs as `globalThis.__outpost_host` before the bundle runs. */
export interface GuestHostFns {
  /** An output of invocation `id`. */
  call(id: number, op: "publish" | "emit", subject: string, data: ArrayBuffer, delayMs?: number): Promise<void>;
  /** A log line of invocation `id` (0 outside any message). */
  log(id: number, level: "debug" | "info" | "warn" | "error", message: string): void;
  /** A message finished: no error, or its error as JSON `{name, message, stack, permanent}`. */
  settle(id: number, error?: string): void;
}

type _Def = {
  handle(r: unknown, ctx: Context): unknown;
  schema?: { "~standard": { validate(v: unknown): unknown } };
};
type _Issue = { message: string; path?: readonly ({ key: PropertyKey } | PropertyKey)[] };

const _g = globalThis as unknown as Record<string, unknown>;
// Taken before the handler's module runs, and removed from its reach.
const _host = _g.__outpost_host as GuestHostFns;
delete _g.__outpost_host;
const _log = makeHandlerLog((level, message) => _host.log(0, level, message));
installGuestGlobals(_log, utf8Encode, utf8Decode);

/**
 * Serve the host: called by the bundle's entry with the handler module's default export.
 * @param def the default export of the handler module
 */
export function serveGuest(def: unknown): void {
  const running = new Map<number, GuestAbortController>();
  _g.__outpost = {
    describe(): string {
      const problems = checkDefinition(def);
      if (problems.length) {
        return JSON.stringify({ error: { name: "TypeError", message: `Invalid handler definition: ${problems.join("; ")}` } });
      }
      return JSON.stringify({ info: handlerInfo(def as Record<string, unknown>) });
    },
    invoke(id: number, subject: string, seq: number, attempt: number, data: ArrayBuffer, sensor: string, traceparent: string, tracestate: string): void {
      void _invoke(def as _Def, { id, subject, seq, attempt, data: new Uint8Array(data), ...(sensor ? { sensor } : {}), ...(traceparent ? { traceparent } : {}), ...(tracestate ? { tracestate } : {}) }, running);
    },
    cancel(id: number, timeout: boolean): void {
      const reason = new Error(timeout ? "Timed out" : "Cancelled by the host");
      reason.name = timeout ? "TimeoutError" : "AbortError";
      running.get(id)?.abort(reason);
    },
    async validate(data: ArrayBuffer): Promise<string> {
      const schema = (def as _Def).schema;
      const readings = cborDecode(new Uint8Array(data)) as unknown[];
      const issues: { index: number; path: string; message: string }[] = [];
      if (!schema) return "[]";
      for (let i = 0; i < readings.length; i++) {
        const r = (await schema["~standard"].validate(readings[i])) as { issues?: _Issue[] };
        for (const issue of r.issues ?? []) issues.push({ index: i, path: _path(issue.path), message: issue.message });
      }
      return JSON.stringify(issues);
    },
  };
}

async function _invoke(
  def: _Def,
  m: { id: number; subject: string; seq: number; attempt: number; data: Uint8Array; sensor?: string; traceparent?: string; tracestate?: string },
  running: Map<number, GuestAbortController>,
): Promise<void> {
  const ac = new (_g.AbortController as new () => GuestAbortController)();
  running.set(m.id, ac);
  try {
    // As in the worker tier: the schema's output (transforms, defaults); an outdated reading fails for good.
    const reading = await handlerReading(def.schema, cborDecode(m.data));
    const call = (op: "publish" | "emit", subject: string, value: unknown, delayMs?: number) => {
      const bytes = cborEncode(value);
      return _host.call(m.id, op, String(subject), bytes.buffer as ArrayBuffer, Number(delayMs ?? 0));
    };
    const ctx = makeContext(m, ac.signal as unknown as AbortSignal, { call, log: makeHandlerLog((level, message) => _host.log(m.id, level, message)) });
    await def.handle(reading, ctx);
    _host.settle(m.id);
  } catch (e) {
    const error = toErrorData(e);
    if (error.stack && error.stack.length > 4_000) error.stack = `${error.stack.slice(0, 4_000)}\n    …`;
    _host.settle(m.id, JSON.stringify({ ...error, permanent: error.name === "PermanentError" }));
  } finally {
    running.delete(m.id);
  }
}


function _path(path: _Issue["path"]): string {
  if (!path) return "";
  return path.map((p) => String(typeof p === "object" && p !== null && "key" in p ? p.key : p)).join(".");
}
