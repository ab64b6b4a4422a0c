import type { HandlerInfo } from "../sdk/definition.ts";

/**
 * Delay before the next attempt.
 * @param policy a list of delays (the last one repeats), or exponential from `baseMs` doubling to `maxMs`
 * @param failedAttempt the attempt that just failed, from 1
 * @param jitter scale the delay by a random factor in [1 - jitter, 1 + jitter]
 * @param random a source of numbers in [0, 1) (tests pass a fixed one)
 * @returns milliseconds
 */
export function backoffDelay(
  policy: HandlerInfo["backoff"],
  failedAttempt: number,
  jitter = 0,
  random: () => number = Math.random,
): number {
  const base = Array.isArray(policy)
    ? policy[Math.min(failedAttempt - 1, policy.length - 1)] ?? 0
    : Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, failedAttempt - 1));
  return Math.max(0, Math.round(base * (1 + jitter * (2 * random() - 1))));
}
