/**
 * Canary releases of a handler on one device: the new version takes a share of the topic's
 * readings (chosen stably by reading id, so a retry goes to the same version) beside the active
 * version, while a budget is watched: its error rate, its dead letters and its p99 latency next to
 * the active version's. Within budget after N of its readings or T seconds, it is promoted (the
 * handler file is replaced atomically and swapped in blue/green, as a drop-in is); past the budget
 * at any point, it is rolled back, the reason recorded. Each reading is handled by one version.
 * @module
 */

/** The budget of a canary and when it is judged. */
export interface CanaryPolicy {
  /** 0..1: the share of readings the canary takes. */
  share: number;
  /** Promote after the canary handled this many readings within budget. */
  readings: number;
  /** … or after this long, whichever comes first (with at least `minReadings`). */
  ms: number;
  /** Largest share of the canary's attempts that may fail (0..1). */
  maxErrorRate: number;
  /** Most readings the canary may dead-letter. */
  maxDeadLetters: number;
  /** Largest canary p99 ÷ active p99. */
  maxP99Ratio: number;
}

export const CANARY_DEFAULTS: Omit<CanaryPolicy, "share"> = { readings: 100, ms: 600_000, maxErrorRate: 0.05, maxDeadLetters: 0, maxP99Ratio: 2 };
/** A canary's parameters as an operator writes them (`?share=10&for=10m`, the fleet record's `canary`). */
export interface CanaryParams {
  /** Percent of the readings (0.1–100); default 10. */
  share?: string | number | undefined;
  readings?: string | number | undefined;
  /** A duration: 90s, 15m, 2h, 1d (at most 7d); default 10m. */
  for?: string | undefined;
  /** Percent of the canary's attempts. */
  maxErrorRate?: string | number | undefined;
  maxDeadLetters?: string | number | undefined;
  maxP99Ratio?: string | number | undefined;
}

/** A parameter out of range; its message says which and what is allowed. */
export class CanaryPolicyError extends Error {
  override name = "CanaryPolicyError";
}

/**
 * The policy of {@link CanaryParams}, with {@link CANARY_DEFAULTS} for what is not given.
 * @throws CanaryPolicyError naming the parameter
 */
export function canaryPolicy(p: CanaryParams): CanaryPolicy {
  const num = (v: string | number | undefined, d: number, min: number, max: number, what: string) => {
    const x = v === undefined || v === "" ? d : Number(v);
    if (!Number.isFinite(x) || x < min || x > max) throw new CanaryPolicyError(`${what} must be a number from ${min} to ${max}`);
    return x;
  };
  const ms = parseWindow(p.for ?? "10m");
  if (ms === undefined) throw new CanaryPolicyError("for must be a duration such as 90s, 15m, 2h or 1d (at most 7d)");
  return {
    share: num(p.share, 10, 0.1, 100, "share (percent)") / 100,
    readings: Math.round(num(p.readings, CANARY_DEFAULTS.readings, 1, 10_000_000, "readings")),
    ms,
    maxErrorRate: num(p.maxErrorRate, CANARY_DEFAULTS.maxErrorRate * 100, 0, 100, "maxErrorRate (percent)") / 100,
    maxDeadLetters: Math.round(num(p.maxDeadLetters, CANARY_DEFAULTS.maxDeadLetters, 0, 1e9, "maxDeadLetters")),
    maxP99Ratio: num(p.maxP99Ratio, CANARY_DEFAULTS.maxP99Ratio, 1, 1000, "maxP99Ratio"),
  };
}

/** `90s`, `15m`, `2h`, `1d` (from 1 ms to `maxMs`, 7 days unless told) in milliseconds; undefined when it is not one. */
export function parseWindow(s: string, maxMs = 7 * 86_400_000): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s"];
  return ms >= 1 && ms <= maxMs ? ms : undefined;
}

/** Fewer canary attempts than this say nothing about its error rate yet. */
const _MIN_SAMPLE = 5;
/**
 * Fewer timings than this on either side say nothing about a p99: it is then the slowest attempt,
 * and a canary's first attempt runs cold (its isolate compiles the handler), which alone once put a
 * healthy canary past 2× in CI. Below it the latency budget is not judged.
 */
export const P99_MIN_SAMPLE = 20;
/** A canary p99 at most this much above the active one is within budget whatever the ratio (sub-millisecond p99s make ratios noise). */
const _P99_SLACK_MS = 1;

interface _Side {
  attempts: number;
  failed: number;
  deadLettered: number;
  ms: number[];
}

/** What `/v1/handlers` shows of a canary. */
export interface CanaryView {
  candidate: string;
  active: string;
  state: "running" | "promoted" | "rolled back";
  reason: string | null;
  startedAt: string;
  endedAt: string | null;
  policy: CanaryPolicy;
  canary: { attempts: number; failed: number; deadLettered: number; errorRate: number | null; p99Ms: number | null };
  activeVersion: { attempts: number; failed: number; deadLettered: number; errorRate: number | null; p99Ms: number | null };
}

/** The budget's judge: fed every attempt's result; decides once, then is done. */
export class CanarySession {
  readonly candidate: string;
  readonly active: string;
  readonly policy: CanaryPolicy;
  #started = Date.now();
  #state: CanaryView["state"] = "running";
  #reason: string | undefined;
  #ended: number | undefined;
  #sides: Record<"active" | "canary", _Side> = { active: _side(), canary: _side() };
  #decide: (promote: boolean, reason: string) => void;
  #timer: ReturnType<typeof setTimeout>;

  constructor(candidate: string, active: string, policy: CanaryPolicy, decide: (promote: boolean, reason: string) => void) {
    this.candidate = candidate;
    this.active = active;
    this.policy = policy;
    this.#decide = decide;
    this.#timer = setTimeout(() => this.#judge(true), policy.ms);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  get running(): boolean {
    return this.#state === "running";
  }

  /** One attempt's result. */
  result(version: "active" | "canary", r: { ok: boolean; deadLettered: boolean; ms: number }): void {
    if (!this.running) return;
    const s = this.#sides[version];
    s.attempts++;
    if (!r.ok) s.failed++;
    if (r.deadLettered) s.deadLettered++;
    s.ms.push(r.ms);
    if (s.ms.length > 20_000) s.ms.shift();
    if (version === "canary") this.#judge(false);
  }

  /** The canary's isolate died: rolled back at once. */
  crashed(reason: string): void {
    this.#end(false, `the canary crashed: ${reason}`);
  }

  /** The operator (or the host) ends it without promoting. */
  abort(reason: string): void {
    this.#end(false, reason);
  }

  /** A canary that never started: stop its clock without deciding anything. */
  dispose(): void {
    clearTimeout(this.#timer);
    this.#state = "rolled back";
    this.#reason = "did not start";
    this.#ended = Date.now();
  }

  /** Recorded as promoted or rolled back (the registry's own decision, once carried out). */
  #end(promote: boolean, reason: string): void {
    if (!this.running) return;
    clearTimeout(this.#timer);
    this.#state = promote ? "promoted" : "rolled back";
    this.#reason = reason;
    this.#ended = Date.now();
    this.#decide(promote, reason);
  }

  /** Past the budget: roll back. At the end (readings or time) within it: promote. */
  #judge(timeUp: boolean): void {
    const c = this.#sides.canary;
    const a = this.#sides.active;
    const p = this.policy;
    if (c.deadLettered > p.maxDeadLetters) return this.#end(false, `the canary dead-lettered ${c.deadLettered} reading(s); the budget allows ${p.maxDeadLetters}`);
    const rate = c.attempts ? c.failed / c.attempts : 0;
    if (c.attempts >= _MIN_SAMPLE && rate > p.maxErrorRate) {
      return this.#end(false, `the canary's error rate ${_pct(rate)} (${c.failed} of ${c.attempts} attempts) is over the budget of ${_pct(p.maxErrorRate)}`);
    }
    if (!timeUp && c.attempts - c.failed < p.readings) return;
    if (timeUp && c.attempts < _MIN_SAMPLE) return this.#end(false, `the canary handled ${c.attempts} reading(s) in ${p.ms} ms: too few to judge`);
    const cp = _p99(c.ms);
    const ap = _p99(a.ms);
    if (cp !== null && ap !== null && c.ms.length >= P99_MIN_SAMPLE && a.ms.length >= P99_MIN_SAMPLE && ap > 0 && cp - ap > _P99_SLACK_MS && cp / ap > p.maxP99Ratio) {
      return this.#end(false, `the canary's p99 ${cp.toFixed(1)} ms is ${(cp / ap).toFixed(2)}× the active version's ${ap.toFixed(1)} ms; the budget allows ${p.maxP99Ratio}×`);
    }
    this.#end(true, `within budget after ${c.attempts - c.failed} readings${timeUp ? ` and ${p.ms} ms` : ""}: error rate ${_pct(rate)}, ${c.deadLettered} dead letters, p99 ${cp?.toFixed(1) ?? "n/a"} ms vs ${ap?.toFixed(1) ?? "n/a"} ms`);
  }

  view(): CanaryView {
    const side = (s: _Side) => ({ attempts: s.attempts, failed: s.failed, deadLettered: s.deadLettered, errorRate: s.attempts ? s.failed / s.attempts : null, p99Ms: _p99(s.ms) });
    return {
      candidate: this.candidate, active: this.active, state: this.#state, reason: this.#reason ?? null,
      startedAt: new Date(this.#started).toISOString(), endedAt: this.#ended ? new Date(this.#ended).toISOString() : null,
      policy: this.policy, canary: side(this.#sides.canary), activeVersion: side(this.#sides.active),
    };
  }
}

function _side(): _Side {
  return { attempts: 0, failed: 0, deadLettered: 0, ms: [] };
}

function _p99(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]! * 1000) / 1000;
}

const _pct = (x: number) => `${(x * 100).toFixed(1)} %`;
