import { DEFAULTS } from "../handlers/definition.ts";

/**
 * Delay before the next attempt.
 * @param policy a list of delays (the last one repeats) or `"exponential"` (1 s doubling to 60 s)
 * @param failedAttempt the attempt that just failed, from 1
 * @returns milliseconds
 */
export function backoffDelay(policy: readonly number[] | "exponential", failedAttempt: number): number {
  if (policy === "exponential") {
    return Math.min(DEFAULTS.backoffMaxMs, DEFAULTS.backoffBaseMs * 2 ** Math.max(0, failedAttempt - 1));
  }
  return policy[Math.min(failedAttempt - 1, policy.length - 1)] ?? 0;
}
