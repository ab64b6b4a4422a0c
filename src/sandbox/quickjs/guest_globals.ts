/**
 * Standard globals QuickJS lacks that a handler written for the worker tier may use: a minimal
 * AbortController/AbortSignal (for `ctx.signal`), TextEncoder/TextDecoder (UTF-8 only),
 * `console` (to the host's log) and `queueMicrotask`. Nothing here reaches outside the sandbox.
 * Runs inside the sandbox only.
 * @module
 */
import type { HandlerLog } from "../../sdk/handler.ts";

/** The sandbox's AbortSignal: `aborted`, `reason`, `onabort`, listeners, `throwIfAborted`. */
export interface GuestAbortSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  onabort: ((e: { type: string }) => void) | null;
  addEventListener(type: string, cb: (e: { type: string }) => void): void;
  removeEventListener(type: string, cb: (e: { type: string }) => void): void;
  throwIfAborted(): void;
}

/** The sandbox's AbortController. */
export interface GuestAbortController {
  readonly signal: GuestAbortSignal;
  abort(reason?: unknown): void;
}

class _Signal implements GuestAbortSignal {
  aborted = false;
  reason: unknown = undefined;
  onabort: ((e: { type: string }) => void) | null = null;
  #listeners: ((e: { type: string }) => void)[] = [];
  addEventListener(type: string, cb: (e: { type: string }) => void): void {
    if (type === "abort") this.#listeners.push(cb);
  }
  removeEventListener(type: string, cb: (e: { type: string }) => void): void {
    if (type === "abort") this.#listeners = this.#listeners.filter((l) => l !== cb);
  }
  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }
  _abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const e = { type: "abort" };
    for (const l of [this.onabort, ...this.#listeners]) {
      try {
        l?.(e);
      } catch { /* a listener's error does not stop the others */ }
    }
  }
}

class _Controller implements GuestAbortController {
  readonly signal = new _Signal();
  abort(reason?: unknown): void {
    let r = reason;
    if (r === undefined) {
      r = new Error("This operation was aborted");
      (r as Error).name = "AbortError";
    }
    this.signal._abort(r);
  }
}

/**
 * Install the globals (only those missing).
 * @param log where `console.*` goes
 */
export function installGuestGlobals(log: HandlerLog, encode: (s: string) => Uint8Array, decode: (b: Uint8Array) => string): void {
  const g = globalThis as unknown as Record<string, unknown>;
  const define = (name: string, value: unknown) => {
    if (g[name] === undefined) Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });
  };
  define("AbortController", _Controller);
  define("AbortSignal", _Signal);
  define("TextEncoder", class TextEncoder {
    readonly encoding = "utf-8";
    encode(s = ""): Uint8Array {
      return encode(String(s));
    }
  });
  define("TextDecoder", class TextDecoder {
    readonly encoding = "utf-8";
    decode(b?: Uint8Array | ArrayBuffer): string {
      if (!b) return "";
      return decode(b instanceof Uint8Array ? b : new Uint8Array(b));
    }
  });
  define("console", { log, info: log.info, debug: log.debug, warn: log.warn, error: log.error, trace: log.debug });
  define("queueMicrotask", (fn: () => void) => void Promise.resolve().then(fn));
}
