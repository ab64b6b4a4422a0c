/**
 * What one message may make a handler send out: outputs (`ctx.publish`, `ctx.emit`) and log lines,
 * by count and by bytes. The host counts, not the isolate: a worker-tier handler can post to its
 * port directly, so the SDK's own checks are a courtesy and this is the bound.
 */

/** Caps per message (a batch counts as one message of `size` times these). */
export interface OutputLimits {
  /** `ctx.publish` + `ctx.emit` calls. */
  maxOutputs: number;
  /** Their encoded bytes together. */
  maxOutputBytes: number;
  /** `ctx.log` lines. */
  maxLogLines: number;
  /** Their characters together. */
  maxLogBytes: number;
}

/** Defaults that fit a small device: 1,000 outputs or 4 MiB, 100 log lines or 64 KiB per message. */
export const DEFAULT_OUTPUT_LIMITS: OutputLimits = { maxOutputs: 1_000, maxOutputBytes: 4 * 1024 * 1024, maxLogLines: 100, maxLogBytes: 64 * 1024 };

/** Longest single log line a handler can write, in characters; the rest is cut (SDK and host alike). */
export const MAX_LOG_LINE = 16_384;

/** A message made its handler send out more than its caps allow; the attempt fails. */
export class OutputLimitError extends Error {
  override name = "OutputLimitError";
}

/** What the host does with one output or log line. */
export type Verdict =
  | { type: "ok" }
  /** Refused, and the message's attempt fails now with `error`. */
  | { type: "fail"; error: OutputLimitError }
  /** Refused quietly: the attempt is over already (failed, timed out, or its isolate died). */
  | { type: "drop" }
  /** Refused, and the isolate keeps sending for attempts that are over: replace it. */
  | { type: "flood" };

interface _Used {
  outputs: number;
  outputBytes: number;
  lines: number;
  logBytes: number;
  /** A cap was passed: everything after is dropped. */
  over: boolean;
  error?: OutputLimitError;
  scale: number;
}

// Logs outside any message (module level, timers): this many lines a minute, the rest dropped.
const _LOOSE_LINES = 1_000;

/**
 * The accounting of one isolate: each invocation opens an account when it starts and closes it
 * when it settles, however it settles. Outputs of a closed account are never published.
 */
export class OutputBudget {
  #limits: OutputLimits;
  #open = new Map<number, _Used>();
  #dropped = 0;
  #droppedSince = -Infinity;
  #loose = 0;
  #looseSince = -Infinity;
  #name: string;

  #now: () => number;

  /** @param now a monotonic clock in ms (a wall clock that steps back would never end a window) */
  constructor(name: string, limits: OutputLimits = DEFAULT_OUTPUT_LIMITS, now: () => number = () => performance.now()) {
    this.#name = name;
    this.#limits = limits;
    this.#now = now;
  }

  /** An invocation starts; `scale` multiplies the caps (the readings of a batch). */
  open(id: number, scale = 1): void {
    this.#open.set(id, { outputs: 0, outputBytes: 0, lines: 0, logBytes: 0, over: false, scale });
  }

  /** An invocation settled: what it still sends is dropped. */
  close(id: number): void {
    this.#open.delete(id);
  }

  /** The error that failed invocation `id`, if a cap was passed (the isolate side reports it). */
  failure(id: number): OutputLimitError | undefined {
    return this.#open.get(id)?.error;
  }

  /** One `ctx.publish` / `ctx.emit` of `bytes` for invocation `id`. */
  output(id: number, bytes: number): Verdict {
    const u = this.#open.get(id);
    if (!u || u.over) return this.#drop();
    u.outputs++;
    u.outputBytes += bytes;
    const l = this.#limits;
    if (u.outputs > l.maxOutputs * u.scale) return this.#fail(u, `sent more than ${l.maxOutputs * u.scale} outputs (ctx.publish and ctx.emit) for one message (--max-outputs)`);
    if (u.outputBytes > l.maxOutputBytes * u.scale) return this.#fail(u, `sent more than ${l.maxOutputBytes * u.scale} bytes of outputs for one message (--max-output-bytes)`);
    return { type: "ok" };
  }

  /** One log line of `chars` characters for invocation `id` (0: outside any message). */
  log(id: number, chars: number): Verdict {
    if (id === 0) {
      const now = this.#now();
      if (now - this.#looseSince > 60_000) {
        this.#looseSince = now;
        this.#loose = 0;
      }
      return ++this.#loose > _LOOSE_LINES ? { type: "drop" } : { type: "ok" };
    }
    const u = this.#open.get(id);
    if (!u || u.over) return this.#drop();
    u.lines++;
    u.logBytes += chars;
    const l = this.#limits;
    if (u.lines > l.maxLogLines * u.scale) return this.#fail(u, `wrote more than ${l.maxLogLines * u.scale} log lines for one message (--max-log-lines)`);
    if (u.logBytes > l.maxLogBytes * u.scale) return this.#fail(u, `wrote more than ${l.maxLogBytes * u.scale} characters of log for one message (--max-log-bytes)`);
    return { type: "ok" };
  }

  #fail(u: _Used, what: string): Verdict {
    u.over = true;
    u.error = new OutputLimitError(`Handler ${this.#name} ${what}; the attempt failed and its later outputs were dropped`);
    return { type: "fail", error: u.error };
  }

  #drop(): Verdict {
    // A well-behaved handler stops soon after its attempt failed; one that keeps sending, within
    // a second, ten times the outputs a message may have, for attempts that are over, floods its port.
    const now = this.#now();
    if (now - this.#droppedSince > 1_000) {
      this.#droppedSince = now;
      this.#dropped = 0;
    }
    return ++this.#dropped > this.#limits.maxOutputs * 10 ? { type: "flood" } : { type: "drop" };
  }
}
