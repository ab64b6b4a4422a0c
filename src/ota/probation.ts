import type { HandlerCounts, HandlerRunner } from "../dispatch/runner.ts";

/** When a release on probation is committed or rolled back. */
export interface ProbationPolicy {
  /** Commit after this long without too many failures. */
  ms: number;
  /** Or after this many messages handled by the release. */
  messages: number;
  /** Roll back when more than this share (percent) of handled messages failed. */
  failurePct: number;
  /** Failures needed before the rate is judged early (before the window ends). */
  minFailures: number;
}

/** What probation decided, or that it has not decided yet. */
export type ProbationVerdict =
  | { type: "pending" }
  | { type: "commit"; handled: number; failed: number }
  | { type: "rollback"; reason: string; handled: number; failed: number };

/**
 * Watches the counts of the handlers of a release since it became active and judges it.
 * Crashes count as failures; a handler marked `crashing` or stopped fails the release at once.
 */
export class Probation {
  readonly release: number;
  readonly since: number;
  #policy: ProbationPolicy;
  #runners: () => HandlerRunner[];
  #baseline = new Map<HandlerRunner, HandlerCounts>();

  /**
   * @param runners the registry's running handlers (read at each check)
   */
  constructor(release: number, policy: ProbationPolicy, runners: () => HandlerRunner[], since = Date.now()) {
    this.release = release;
    this.since = since;
    this.#policy = policy;
    this.#runners = runners;
    for (const r of runners()) this.#baseline.set(r, r.stats().counts);
  }

  /** Messages handled and failed by the release since probation began. */
  tally(): { handled: number; failed: number } {
    let acked = 0;
    let failed = 0;
    for (const r of this.#runners()) {
      const b = this.#baseline.get(r) ?? { acked: 0, failed: 0, retried: 0, deadLettered: 0, crashes: 0 };
      const c = r.stats().counts;
      acked += c.acked - b.acked;
      failed += c.failed - b.failed + (c.crashes - b.crashes);
    }
    return { handled: acked + failed, failed };
  }

  /** Judge the release now. */
  check(now = Date.now()): ProbationVerdict {
    const { handled, failed } = this.tally();
    const p = this.#policy;
    const crashing = this.#runners().find((r) => r.stats().status === "crashing");
    if (crashing) return { type: "rollback", reason: `handler ${crashing.built.name} is crashing (${crashing.stats().lastError ?? "repeated crashes"})`, handled, failed };
    const rate = handled ? (100 * failed) / handled : 0;
    const over = rate > p.failurePct;
    const reason = `${failed} of ${handled} messages failed (${rate.toFixed(0)} %), above the ${p.failurePct} % threshold`;
    if (over && failed >= p.minFailures) return { type: "rollback", reason, handled, failed };
    if (handled >= p.messages || now - this.since >= p.ms) {
      return over ? { type: "rollback", reason, handled, failed } : { type: "commit", handled, failed };
    }
    return { type: "pending" };
  }
}
