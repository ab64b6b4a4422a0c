/**
 * A token bucket: `perSecond` tokens a second, at most `burst` saved up.
 * @example const b = new TokenBucket(10, 5); if (b.available() >= 1) b.take(1);
 */
export class TokenBucket {
  #tokens: number;
  #at: number;
  readonly perSecond: number;
  readonly burst: number;
  #now: () => number;

  constructor(perSecond: number, burst: number, now: () => number = () => performance.now()) {
    this.perSecond = perSecond;
    this.burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#at = now();
  }

  /** Tokens available now (may be fractional). */
  available(): number {
    const t = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#at) / 1000) * this.perSecond);
    this.#at = t;
    return this.#tokens;
  }

  /** Spend `n` tokens (the balance may go below zero; later waits make up for it). */
  take(n: number): void {
    this.available();
    this.#tokens -= n;
  }

  /** Milliseconds until `n` tokens are available. */
  waitMs(n = 1): number {
    const missing = n - this.available();
    return missing <= 0 ? 0 : Math.ceil((missing / this.perSecond) * 1000);
  }
}
