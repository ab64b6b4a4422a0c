/**
 * The live tail: per-message outcomes and log lines as they happen, for `GET /v1/events`
 * (server-sent events) and `outpost tail`. Publishing is a loop over the subscribers and a push
 * into each one's bounded queue; a subscriber that falls behind loses events (counted and told),
 * and past `maxPerSecond` events are sampled, so a tail never slows the pipeline.
 * @module
 */
import type { Level, LogFields, Logger } from "../util/log.ts";

/** One event of the tail. */
export type TailEvent =
  | { type: "outcome"; ts: string; handler: string; outcome: string; topic?: string | undefined; seq?: number | undefined; attempt?: number | undefined; durationMs?: number | undefined; error?: string | undefined; traceId?: string | undefined }
  | { type: "log"; ts: string; level: Level; scope: string; msg: string; handler?: string | undefined }
  | { type: "dropped"; ts: string; count: number; reason: "slow" | "sampled" };

const _RANK = { debug: 10, info: 20, warn: 30, error: 40 } as const;

/** What a subscriber wants. */
export interface TailFilter {
  handler?: string | undefined;
  /** Log lines at or above this level (outcomes always pass). */
  level?: Level | undefined;
}

interface _Sub {
  filter: TailFilter;
  queue: TailEvent[];
  wake: (() => void) | undefined;
  dropped: number;
  sampled: number;
  windowStart: number;
  inWindow: number;
}

/** The host's event bus. */
export class EventBus {
  #subs = new Set<_Sub>();
  readonly maxQueue: number;
  readonly maxPerSecond: number;

  constructor(o: { maxQueue?: number; maxPerSecond?: number } = {}) {
    this.maxQueue = o.maxQueue ?? 1_000;
    this.maxPerSecond = o.maxPerSecond ?? 500;
  }

  /** Whether anyone listens (publishers skip building events otherwise). */
  get active(): boolean {
    return this.#subs.size > 0;
  }

  publish(e: TailEvent): void {
    const now = performance.now();
    for (const s of this.#subs) {
      if (!_matches(s.filter, e)) continue;
      if (now - s.windowStart >= 1_000) {
        s.windowStart = now;
        s.inWindow = 0;
      }
      if (++s.inWindow > this.maxPerSecond) {
        s.sampled++;
        continue;
      }
      if (s.queue.length >= this.maxQueue) {
        s.dropped++;
        continue;
      }
      s.queue.push(e);
      s.wake?.();
    }
  }

  /**
   * Subscribe until `signal` aborts.
   * @returns the events in order; `dropped` events say how many were lost to a slow reader or sampling
   */
  async *subscribe(filter: TailFilter, signal: AbortSignal): AsyncGenerator<TailEvent> {
    const s: _Sub = { filter, queue: [], wake: undefined, dropped: 0, sampled: 0, windowStart: performance.now(), inWindow: 0 };
    this.#subs.add(s);
    const onAbort = () => s.wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      while (!signal.aborted) {
        if (!s.queue.length) await new Promise<void>((r) => (s.wake = r));
        s.wake = undefined;
        while (s.queue.length) yield s.queue.shift()!;
        for (const reason of ["slow", "sampled"] as const) {
          const n = reason === "slow" ? s.dropped : s.sampled;
          if (n) {
            yield { type: "dropped", ts: new Date().toISOString(), count: n, reason };
            if (reason === "slow") s.dropped = 0;
            else s.sampled = 0;
          }
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.#subs.delete(s);
    }
  }
}

function _matches(f: TailFilter, e: TailEvent): boolean {
  if (e.type === "dropped") return true;
  const handler = e.type === "outcome" ? e.handler : e.handler;
  if (f.handler && handler !== f.handler) return false;
  if (e.type === "log" && f.level && _RANK[e.level] < _RANK[f.level]) return false;
  return true;
}

/**
 * A logger that also puts its lines on the bus (when anyone listens), children included.
 * @param log the logger lines are written to
 * @param scope the scope of `log` (for the events)
 */
export function tapLogger(log: Logger, bus: EventBus, scope = "outpost", base: LogFields = {}): Logger {
  const at = (level: Level) => (msg: string, fields?: LogFields) => {
    log[level](msg, fields);
    if (bus.active) bus.publish({ type: "log", ts: new Date().toISOString(), level, scope, msg, handler: (fields?.handler ?? base.handler) as string | undefined });
  };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (s, f) => tapLogger(log.child(s, f), bus, s, { ...base, ...f }),
  };
}
