/**
 * The canary's judge: what rolls a canary back and what promotes it, fed attempt results directly.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CanarySession, P99_MIN_SAMPLE, canaryPolicy, parseWindow } from "../../src/release/canary.ts";

function session(params: Parameters<typeof canaryPolicy>[0]) {
  const decided: { promote: boolean; reason: string }[] = [];
  const s = new CanarySession("cand", "act", canaryPolicy(params), (promote, reason) => decided.push({ promote, reason }));
  return { s, decided };
}
const ok = (ms: number) => ({ ok: true, deadLettered: false, ms });

test("a cold first attempt does not roll back a healthy canary judged on a few readings", () => {
  const { s, decided } = session({ share: 50, readings: 5 });
  for (let i = 0; i < 6; i++) s.result("active", ok(20));
  s.result("canary", ok(200));
  for (let i = 0; i < 4; i++) s.result("canary", ok(20));
  assert.equal(decided.length, 1);
  assert.equal(decided[0]!.promote, true, decided[0]!.reason);
  assert.match(decided[0]!.reason, /^within budget after 5 readings: error rate 0\.0 %, 0 dead letters, p99 200\.0 ms vs 20\.0 ms$/);
  assert.equal(s.view().state, "promoted");
});

test(`a canary slower than the budget over ${P99_MIN_SAMPLE} timings on each side is rolled back with both p99s`, () => {
  const { s, decided } = session({ share: 50, readings: P99_MIN_SAMPLE, maxP99Ratio: 2 });
  for (let i = 0; i < P99_MIN_SAMPLE; i++) s.result("active", ok(10));
  for (let i = 0; i < P99_MIN_SAMPLE; i++) s.result("canary", ok(25));
  assert.deepEqual(decided, [{ promote: false, reason: "the canary's p99 25.0 ms is 2.50× the active version's 10.0 ms; the budget allows 2×" }]);
});

test("sub-millisecond p99s are within budget whatever their ratio", () => {
  const { s, decided } = session({ share: 50, readings: P99_MIN_SAMPLE });
  for (let i = 0; i < P99_MIN_SAMPLE; i++) s.result("active", ok(0.2));
  for (let i = 0; i < P99_MIN_SAMPLE; i++) s.result("canary", ok(0.9));
  assert.equal(decided[0]?.promote, true, decided[0]?.reason ?? "no decision");
});

test("failures past the error budget roll back after 5 attempts; a dead letter past its budget at once", () => {
  const a = session({ share: 10, readings: 100, maxErrorRate: 5 });
  for (let i = 0; i < 4; i++) a.s.result("canary", { ok: i !== 0, deadLettered: false, ms: 1 });
  assert.equal(a.decided.length, 0, "4 attempts say nothing yet");
  a.s.result("canary", ok(1));
  assert.deepEqual(a.decided, [{ promote: false, reason: "the canary's error rate 20.0 % (1 of 5 attempts) is over the budget of 5.0 %" }]);
  a.s.result("canary", ok(1));
  assert.equal(a.decided.length, 1, "it decides once");

  const b = session({ share: 10 });
  b.s.result("canary", { ok: false, deadLettered: true, ms: 1 });
  assert.deepEqual(b.decided, [{ promote: false, reason: "the canary dead-lettered 1 reading(s); the budget allows 0" }]);
});

test("the policy names a parameter out of range; windows read as durations", () => {
  assert.throws(() => canaryPolicy({ share: 0 }), /^CanaryPolicyError: share \(percent\) must be a number from 0\.1 to 100$/);
  assert.throws(() => canaryPolicy({ for: "10 minutes" }), /for must be a duration such as 90s, 15m, 2h or 1d \(at most 7d\)/);
  assert.equal(canaryPolicy({}).share, 0.1);
  assert.equal(parseWindow("90s"), 90_000);
  assert.equal(parseWindow("8d"), undefined);
});
