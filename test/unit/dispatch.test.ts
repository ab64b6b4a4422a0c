// Unit tests of the pure dispatch primitives (slots, token bucket, batcher, backoff) and of the
// sandbox's output budget and message coalescing. No broker, no isolate; time is injected or mocked.
import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import type { JsMsg } from "@nats-io/jetstream";
import { backoffDelay } from "../../src/dispatch/backoff.ts";
import { Batcher } from "../../src/dispatch/batcher.ts";
import { SCHEDULER_DURABLE } from "../../src/dispatch/scheduler.ts";
import { Slots, type Lane } from "../../src/dispatch/slots.ts";
import { TokenBucket } from "../../src/dispatch/token_bucket.ts";
import { DEFAULT_OUTPUT_LIMITS, MAX_LOG_LINE, OutputBudget, OutputLimitError, type OutputLimits } from "../../src/sandbox/budget.ts";
import { coalescing, unbulk, type Bulk } from "../../src/sandbox/coalesce.ts";

/** Let every pending promise reaction and earlier `setImmediate` callback run. */
const _turn = () => new Promise<void>((r) => setImmediate(r));

// ---------------------------------------------------------------------------------------------
// Slots

/** Queue a waiter on `lane` that records `label` (and what it was granted) when it is served. */
function _wait(s: Slots, lane: Lane, label: string, served: string[], want = 1): Promise<number> {
  return s.acquire(lane, want).then((n) => {
    served.push(label);
    return n;
  });
}

test("slots grant at once up to capacity, partially when less is free, and count what is used", async () => {
  const s = new Slots(4);
  assert.equal(s.capacity, 4);
  assert.equal(s.used, 0);
  assert.equal(await s.acquire(0, 3), 3);
  assert.equal(s.used, 3);
  assert.equal(await s.acquire(1, 5), 1, "only one slot was left");
  assert.equal(s.used, 4);
});

test("slots treat a want below 1 as a want of 1", async () => {
  const s = new Slots(4);
  assert.equal(await s.acquire(0, 0), 1);
  assert.equal(await s.acquire(1, -3), 1);
  assert.equal(s.used, 2);
});

test("slots make a waiter wait for a release, then grant it no more than was freed", async () => {
  const s = new Slots(2);
  assert.equal(await s.acquire(0, 2), 2);
  let got: number | undefined;
  void s.acquire(0, 2).then((n) => (got = n));
  await _turn();
  assert.equal(got, undefined, "no room: the waiter waits");
  s.release(1);
  await _turn();
  assert.equal(got, 1);
  assert.equal(s.used, 2);
});

test("slots release never frees beyond capacity and ignores counts of 0 or less", async () => {
  const s = new Slots(3);
  s.release(5);
  assert.equal(s.used, 0, "releasing into an idle budget changes nothing");
  assert.equal(await s.acquire(0, 3), 3);
  s.release(0);
  s.release(-2);
  assert.equal(s.used, 3);
  s.release(10);
  assert.equal(s.used, 0);
  assert.equal(await s.acquire(0, 10), 3, "the clamped release left exactly capacity free");
});

test("slots serve the waiters of one lane first in, first out", async () => {
  const s = new Slots(1);
  await s.acquire(0, 1);
  const served: string[] = [];
  const all = ["a", "b", "c", "d"].map((l) => _wait(s, 0, l, served));
  for (let i = 0; i < 4; i++) s.release(1);
  assert.deepEqual(await Promise.all(all), [1, 1, 1, 1]);
  assert.deepEqual(served, ["a", "b", "c", "d"]);
});

test("slots grant high-priority waiters weight slots for each normal one", async () => {
  const s = new Slots(1, 2);
  await s.acquire(0, 1);
  const served: string[] = [];
  const all = [
    ...["N1", "N2", "N3", "N4"].map((l) => _wait(s, 0, l, served)),
    ...["H1", "H2", "H3", "H4", "H5", "H6"].map((l) => _wait(s, 1, l, served)),
  ];
  for (let i = 0; i < 10; i++) s.release(1);
  await Promise.all(all);
  assert.deepEqual(served, ["H1", "H2", "N1", "H3", "H4", "N2", "H5", "H6", "N3", "N4"]);
});

test("slots with weight 1 alternate the lanes under load, high first", async () => {
  const s = new Slots(1);
  await s.acquire(1, 1);
  const served: string[] = [];
  const all = [
    ...["N1", "N2", "N3"].map((l) => _wait(s, 0, l, served)),
    ...["H1", "H2", "H3"].map((l) => _wait(s, 1, l, served)),
  ];
  for (let i = 0; i < 6; i++) s.release(1);
  await Promise.all(all);
  assert.deepEqual(served, ["H1", "N1", "H2", "N2", "H3", "N3"]);
});

test("slots hand several waiters their slots, by weight, when one release frees many", async () => {
  const s = new Slots(5, 3);
  await s.acquire(0, 5);
  const served: string[] = [];
  const all = [
    ...["N1", "N2"].map((l) => _wait(s, 0, l, served)),
    ...["H1", "H2", "H3", "H4"].map((l) => _wait(s, 1, l, served)),
  ];
  s.release(5);
  await _turn();
  assert.deepEqual(served, ["H1", "H2", "H3", "N1", "H4"], "three high, one normal, then high again; N2 still waits");
  assert.equal(s.used, 5);
  s.release(1);
  assert.deepEqual(await Promise.all(all), [1, 1, 1, 1, 1, 1]);
  assert.deepEqual(served, ["H1", "H2", "H3", "N1", "H4", "N2"]);
});

test("slots give every slot to the only lane waiting, however large the other lane's weight", async () => {
  const s = new Slots(1, 5);
  await s.acquire(1, 1);
  const served: string[] = [];
  const all = ["N1", "N2", "N3"].map((l) => _wait(s, 0, l, served));
  for (let i = 0; i < 3; i++) s.release(1);
  await Promise.all(all);
  assert.deepEqual(served, ["N1", "N2", "N3"]);
});

test("slots grant a waiter wanting several slots what is free, in turn with the other lane", async () => {
  const s = new Slots(4);
  assert.equal(await s.acquire(0, 4), 4);
  const high = s.acquire(1, 3);
  const normal = s.acquire(0, 3);
  s.release(2);
  assert.equal(await high, 2, "high went first and took both freed slots");
  s.release(4);
  assert.equal(await normal, 3);
  assert.equal(s.used, 3);
});

test("slots close wakes every waiter with 0 and later acquires get 0 at once", async () => {
  const s = new Slots(1);
  await s.acquire(0, 1);
  const waiting = [s.acquire(0, 1), s.acquire(1, 1), s.acquire(1, 4)];
  s.close();
  assert.deepEqual(await Promise.all(waiting), [0, 0, 0]);
  s.release(1);
  assert.equal(await s.acquire(0, 1), 0);
  assert.equal(await s.acquire(1, 1), 0);
  assert.equal(s.used, 0);
});

// ---------------------------------------------------------------------------------------------
// TokenBucket (time injected)

function _clock(start = 1_000) {
  const c = { now: start, read: () => c.now };
  return c;
}

test("token bucket starts full at its burst", () => {
  const c = _clock();
  const b = new TokenBucket(10, 5, c.read);
  assert.equal(b.perSecond, 10);
  assert.equal(b.burst, 5);
  assert.equal(b.available(), 5);
  assert.equal(b.waitMs(5), 0);
  assert.equal(b.waitMs(6), 100, "the sixth token takes a tenth of a second at 10/s");
});

test("token bucket refills at perSecond, fractionally, and saves up no more than its burst", () => {
  const c = _clock();
  const b = new TokenBucket(10, 5, c.read);
  b.take(5);
  assert.equal(b.available(), 0);
  c.now += 100;
  assert.equal(b.available(), 1);
  c.now += 250;
  assert.equal(b.available(), 3.5);
  c.now += 10_000;
  assert.equal(b.available(), 5, "capped at burst after a long idle time");
});

test("token bucket take may overdraw, and waitMs makes up for the debt", () => {
  const c = _clock();
  const b = new TokenBucket(10, 5, c.read);
  b.take(5);
  b.take(3);
  assert.equal(b.available(), -3);
  assert.equal(b.waitMs(1), 400);
  assert.equal(b.waitMs(), 400, "n defaults to one token");
  assert.equal(b.waitMs(3), 600);
  c.now += 399;
  assert.equal(b.waitMs(1), 1, "a part of a millisecond left is a whole millisecond");
  c.now += 1;
  assert.equal(b.waitMs(1), 0);
});

test("token bucket waitMs rounds up, so waiting exactly that long always yields the token", () => {
  const c = _clock();
  const b = new TokenBucket(3, 1, c.read);
  b.take(1);
  const w = b.waitMs(1);
  assert.equal(w, 334);
  c.now += w - 1;
  assert.ok(b.available() < 1);
  c.now += 1;
  assert.ok(b.available() >= 1);
  assert.equal(b.waitMs(1), 0);
});

test("token bucket paces a waiting consumer to burst plus perSecond a second, without drift from rounding", () => {
  for (const [perSecond, burst, expected] of [[20, 5, 5 + 199], [3, 1, 1 + 29], [7, 2, 2 + 69], [0.5, 1, 1 + 4]] as const) {
    const c = _clock(0);
    const b = new TokenBucket(perSecond, burst, c.read);
    let taken = 0;
    // A consumer sleeping waitMs(1) between tokens, for 10 simulated seconds.
    while (c.now < 10_000) {
      const w = b.waitMs(1);
      if (w > 0) c.now += w;
      else {
        b.take(1);
        taken++;
      }
    }
    assert.equal(taken, expected, `${perSecond}/s, burst ${burst}`);
  }
});

test("token bucket's default clock is performance.now in milliseconds", async () => {
  const b = new TokenBucket(1_000, 1_000_000); // 1 token a millisecond
  const a0 = performance.now();
  b.take(1_000_000); // balance 0 at some instant in [a0, a1]
  const a1 = performance.now();
  await new Promise((r) => setTimeout(r, 200));
  const b0 = performance.now();
  const v = b.available(); // read at some instant in [b0, b1]
  const b1 = performance.now();
  assert.ok(v >= b0 - a1 - 1e-6 && v <= b1 - a0 + 1e-6, `${v} tokens, expected between ${b0 - a1} and ${b1 - a0}`);
  assert.ok(v >= 150, `${v} tokens after sleeping 200 ms at 1,000/s`);
});

// ---------------------------------------------------------------------------------------------
// Batcher (setTimeout mocked)

const _msg = (name: string) => ({ name }) as unknown as JsMsg;
const _names = (batches: JsMsg[][]) => batches.map((b) => b.map((m) => (m as unknown as { name: string }).name));

/** A batcher of `size` and `maxWaitMs` on mock timers, and what it flushed. */
function _batcher(t: TestContext, size: number, maxWaitMs: number): { out: JsMsg[][]; b: Batcher } {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const out: JsMsg[][] = [];
  return { out, b: new Batcher(size, maxWaitMs, (msgs) => out.push(msgs)) };
}

test("batcher flushes as soon as size messages are gathered, and cancels its wait", (t) => {
  const { out, b } = _batcher(t, 3, 1_000);
  b.add(_msg("a"));
  b.add(_msg("b"));
  assert.deepEqual(_names(out), []);
  b.add(_msg("c"));
  assert.deepEqual(_names(out), [["a", "b", "c"]], "flushed synchronously on the third add");
  t.mock.timers.tick(5_000);
  assert.deepEqual(_names(out), [["a", "b", "c"]], "no empty or second flush from the old timer");
});

test("batcher flushes a partial batch maxWaitMs after the first message of the batch", (t) => {
  const { out, b } = _batcher(t, 10, 100);
  b.add(_msg("a"));
  t.mock.timers.tick(60);
  b.add(_msg("b"));
  t.mock.timers.tick(39);
  assert.deepEqual(_names(out), [], "99 ms after the first message");
  t.mock.timers.tick(1);
  assert.deepEqual(_names(out), [["a", "b"]], "a later message does not extend the wait");
  b.add(_msg("c"));
  t.mock.timers.tick(99);
  assert.deepEqual(_names(out), [["a", "b"]]);
  t.mock.timers.tick(1);
  assert.deepEqual(_names(out), [["a", "b"], ["c"]], "the next batch waits from its own first message");
});

test("batcher keeps gathering after a size flush: full batches at once, the rest after the wait", (t) => {
  const { out, b } = _batcher(t, 2, 50);
  for (const n of ["a", "b", "c", "d", "e"]) b.add(_msg(n));
  assert.deepEqual(_names(out), [["a", "b"], ["c", "d"]]);
  t.mock.timers.tick(49);
  assert.deepEqual(_names(out), [["a", "b"], ["c", "d"]]);
  t.mock.timers.tick(1);
  assert.deepEqual(_names(out), [["a", "b"], ["c", "d"], ["e"]]);
});

test("batcher's size flush cancels the old wait, so the next batch gets its full maxWaitMs", (t) => {
  const { out, b } = _batcher(t, 2, 100);
  b.add(_msg("a")); // waits until 100
  t.mock.timers.tick(50);
  b.add(_msg("b")); // full at 50
  b.add(_msg("c")); // waits until 150
  t.mock.timers.tick(50);
  assert.deepEqual(_names(out), [["a", "b"]], "the first batch's timer must not flush the second one early");
  t.mock.timers.tick(50);
  assert.deepEqual(_names(out), [["a", "b"], ["c"]]);
});

test("batcher flushNow hands over what is gathered, cancels the timer, and flushes nothing when empty", (t) => {
  const { out, b } = _batcher(t, 10, 100);
  b.flushNow();
  assert.deepEqual(out, [], "nothing gathered: no call");
  b.add(_msg("a"));
  b.add(_msg("b"));
  b.flushNow();
  assert.deepEqual(_names(out), [["a", "b"]]);
  t.mock.timers.tick(1_000);
  b.flushNow();
  assert.deepEqual(_names(out), [["a", "b"]]);
  b.add(_msg("c"));
  t.mock.timers.tick(100);
  assert.deepEqual(_names(out), [["a", "b"], ["c"]], "a new timer starts after flushNow");
});

test("batcher of size 1 flushes every message on its own at once", (t) => {
  const { out, b } = _batcher(t, 1, 100);
  b.add(_msg("a"));
  b.add(_msg("b"));
  assert.deepEqual(_names(out), [["a"], ["b"]]);
  t.mock.timers.tick(1_000);
  assert.equal(out.length, 2);
});

// ---------------------------------------------------------------------------------------------
// backoffDelay (what test/definition.test.ts does not cover)

test("backoff: jitter with a middle random number leaves the delay as it is", () => {
  assert.equal(backoffDelay([1000], 1, 0.5, () => 0.5), 1000);
  assert.equal(backoffDelay({ baseMs: 100, maxMs: 10_000 }, 4, 0.3, () => 0.5), 800);
  assert.equal(backoffDelay([1000], 1, 0, () => 0), 1000, "no jitter: the random number does not matter");
});

test("backoff: jitter scales the exponential delay after the cap, and rounds to whole ms", () => {
  const expo = { baseMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(expo, 3, 0.25, () => 0), 300);
  assert.equal(backoffDelay(expo, 3, 0.25, () => 0.75), 450);
  assert.equal(backoffDelay(expo, 9, 0.5, () => 0.999999), 1500, "jitter may take a capped delay above the cap");
  assert.equal(backoffDelay([333], 1, 0.1, () => 0.75), 350, "333 * 1.05 = 349.65");
  assert.equal(backoffDelay([333], 1, 0.1, () => 0.25), 316, "333 * 0.95 = 316.35");
});

test("backoff: jittered delays stay within [1 - jitter, 1 + jitter] of the delay for any random number", () => {
  for (let i = 0; i < 1000; i++) {
    const r = i / 1000;
    const d = backoffDelay([2000], 3, 0.2, () => r);
    assert.ok(d >= 1600 && d <= 2400, `random ${r} gave ${d}`);
    assert.equal(d, Math.round(2000 * (1 + 0.2 * (2 * r - 1))));
  }
});

test("backoff: a delay is never negative, even with jitter of 1 or more", () => {
  assert.equal(backoffDelay([1000], 1, 1, () => 0), 0);
  assert.equal(backoffDelay([1000], 1, 1.5, () => 0), 0);
  assert.equal(backoffDelay({ baseMs: 100, maxMs: 1000 }, 2, 3, () => 0), 0);
});

test("backoff: the cap applies from the first attempt and for any attempt count", () => {
  assert.equal(backoffDelay({ baseMs: 5000, maxMs: 1000 }, 1), 1000);
  assert.equal(backoffDelay({ baseMs: 100, maxMs: 1000 }, 5_000), 1000, "2 ** 4999 is Infinity: still the cap, not NaN");
  assert.equal(backoffDelay({ baseMs: 100, maxMs: 1000 }, 0), 100, "attempt 0 counts as the first");
  assert.equal(backoffDelay({ baseMs: 0, maxMs: 1000 }, 7), 0);
});

test("backoff: a list is indexed by attempt from 1; an empty list means no delay", () => {
  assert.deepEqual([1, 2, 3, 4, 9].map((a) => backoffDelay([5, 0, 30], a)), [5, 0, 30, 30, 30]);
  assert.equal(backoffDelay([], 1), 0);
  assert.equal(backoffDelay([], 3, 0.5, () => 0.9), 0);
});

// ---------------------------------------------------------------------------------------------
// Scheduler: only its exported durable name is pure (the rest needs a broker).

test("scheduler keeps its delayed readings under the durable name outpost-scheduler", () => {
  // Renaming it would orphan the readings held by the existing consumer after an upgrade.
  assert.equal(SCHEDULER_DURABLE, "outpost-scheduler");
});

// ---------------------------------------------------------------------------------------------
// OutputBudget

const _LIMITS: OutputLimits = { maxOutputs: 3, maxOutputBytes: 100, maxLogLines: 2, maxLogBytes: 50 };
const _tail = "; the attempt failed and its later outputs were dropped";

/** The failure of a verdict, checked to be one. */
function _failed(v: ReturnType<OutputBudget["output"]>): OutputLimitError {
  assert.equal(v.type, "fail");
  const e = (v as { error: OutputLimitError }).error;
  assert.ok(e instanceof OutputLimitError);
  assert.equal(e.name, "OutputLimitError");
  return e;
}

test("budget defaults: 1,000 outputs, 4 MiB, 100 log lines, 64 Ki characters; lines cut at 16,384", () => {
  assert.deepEqual(DEFAULT_OUTPUT_LIMITS, { maxOutputs: 1000, maxOutputBytes: 4_194_304, maxLogLines: 100, maxLogBytes: 65_536 });
  assert.equal(MAX_LOG_LINE, 16_384);
  const b = new OutputBudget("h");
  b.open(1);
  for (let i = 0; i < 1000; i++) assert.equal(b.output(1, 1).type, "ok");
  assert.equal(b.output(1, 1).type, "fail", "the defaults apply when no limits are given");
});

test("budget allows maxOutputs outputs and fails the attempt on the next one, then drops", () => {
  const b = new OutputBudget("h", _LIMITS);
  b.open(1);
  assert.equal(b.failure(1), undefined);
  for (let i = 0; i < 3; i++) assert.deepEqual(b.output(1, 1), { type: "ok" });
  const e = _failed(b.output(1, 1));
  assert.equal(e.message, `Handler h sent more than 3 outputs (ctx.publish and ctx.emit) for one message (--max-outputs)${_tail}`);
  assert.equal(b.failure(1), e, "failure(id) is the very error of the verdict");
  assert.deepEqual(b.output(1, 1), { type: "drop" });
  assert.equal(b.failure(1), e, "later drops keep the first error");
});

test("budget counts output bytes together and fails past maxOutputBytes, not at it", () => {
  const b = new OutputBudget("h", _LIMITS);
  b.open(1);
  assert.equal(b.output(1, 60).type, "ok");
  assert.equal(b.output(1, 40).type, "ok", "exactly 100 bytes is within the cap");
  assert.equal(_failed(b.output(1, 1)).message, `Handler h sent more than 100 bytes of outputs for one message (--max-output-bytes)${_tail}`);
  b.open(2);
  assert.equal(_failed(b.output(2, 101)).message, `Handler h sent more than 100 bytes of outputs for one message (--max-output-bytes)${_tail}`);
});

test("budget allows maxLogLines log lines and maxLogBytes characters of log per invocation", () => {
  const b = new OutputBudget("logger", _LIMITS);
  b.open(1);
  assert.equal(b.log(1, 1).type, "ok");
  assert.equal(b.log(1, 1).type, "ok");
  const lines = _failed(b.log(1, 1));
  assert.equal(lines.message, `Handler logger wrote more than 2 log lines for one message (--max-log-lines)${_tail}`);
  assert.equal(b.failure(1), lines);
  b.open(2);
  assert.equal(b.log(2, 50).type, "ok");
  assert.equal(_failed(b.log(2, 1)).message, `Handler logger wrote more than 50 characters of log for one message (--max-log-bytes)${_tail}`);
});

test("budget drops both outputs and logs of an invocation once any of its caps was passed", () => {
  const b = new OutputBudget("h", _LIMITS);
  b.open(1);
  b.log(1, 1);
  b.log(1, 1);
  const e = _failed(b.log(1, 1));
  assert.deepEqual(b.output(1, 1), { type: "drop" }, "no output was sent yet, but the attempt is over");
  assert.deepEqual(b.log(1, 1), { type: "drop" });
  assert.equal(b.failure(1), e);
  b.open(2);
  b.output(2, 101);
  assert.deepEqual(b.log(2, 1), { type: "drop" });
});

test("budget scale multiplies every cap for a batch invocation", () => {
  const b = new OutputBudget("h", _LIMITS);
  b.open(1, 4);
  for (let i = 0; i < 12; i++) assert.equal(b.output(1, 1).type, "ok", `output ${i + 1}`);
  assert.equal(_failed(b.output(1, 1)).message, `Handler h sent more than 12 outputs (ctx.publish and ctx.emit) for one message (--max-outputs)${_tail}`);
  b.open(2, 4);
  assert.equal(b.output(2, 400).type, "ok");
  assert.equal(_failed(b.output(2, 1)).message, `Handler h sent more than 400 bytes of outputs for one message (--max-output-bytes)${_tail}`);
  b.open(3, 4);
  for (let i = 0; i < 8; i++) assert.equal(b.log(3, 1).type, "ok");
  assert.equal(_failed(b.log(3, 1)).message, `Handler h wrote more than 8 log lines for one message (--max-log-lines)${_tail}`);
  b.open(4, 4);
  assert.equal(b.log(4, 200).type, "ok");
  assert.equal(_failed(b.log(4, 1)).message, `Handler h wrote more than 200 characters of log for one message (--max-log-bytes)${_tail}`);
});

test("budget keeps a separate account for each open invocation", () => {
  const b = new OutputBudget("h", _LIMITS);
  b.open(1);
  b.open(2);
  for (let i = 0; i < 3; i++) b.output(1, 1);
  _failed(b.output(1, 1));
  assert.equal(b.failure(2), undefined);
  for (let i = 0; i < 3; i++) assert.equal(b.output(2, 1).type, "ok");
  assert.equal(b.output(2, 1).type, "fail");
});

test("budget drops what an unknown or closed invocation sends, and forgets its failure on close", () => {
  const b = new OutputBudget("h", _LIMITS);
  assert.deepEqual(b.output(7, 1), { type: "drop" });
  assert.deepEqual(b.log(7, 1), { type: "drop" });
  assert.equal(b.failure(7), undefined);
  b.open(1);
  assert.equal(b.output(1, 1).type, "ok");
  b.close(1);
  assert.deepEqual(b.output(1, 1), { type: "drop" });
  assert.deepEqual(b.log(1, 1), { type: "drop" });
  b.open(2);
  b.output(2, 101);
  assert.ok(b.failure(2) instanceof OutputLimitError);
  b.close(2);
  assert.equal(b.failure(2), undefined);
});

test("budget lets 1,000 log lines outside any message (id 0) through, then drops them, never failing", () => {
  const b = new OutputBudget("h", _LIMITS);
  for (let i = 0; i < 1000; i++) assert.deepEqual(b.log(0, 1_000_000), { type: "ok" }, `loose line ${i + 1}`);
  assert.deepEqual(b.log(0, 1), { type: "drop" });
  assert.deepEqual(b.log(0, 1), { type: "drop" });
  b.open(1);
  assert.equal(b.log(1, 1).type, "ok", "loose lines do not count against an invocation");
});

test("budget reports flood once drops within one second pass ten times maxOutputs", () => {
  let clock = 50_000;
  const tick = (ms: number) => (clock += ms);
  const b = new OutputBudget("h", _LIMITS, () => clock); // maxOutputs 3: flood past 30 drops a second
  for (let i = 0; i < 30; i++) assert.deepEqual(i % 2 ? b.output(9, 1) : b.log(9, 1), { type: "drop" }, `drop ${i + 1}`);
  assert.deepEqual(b.output(9, 1), { type: "flood" });
  tick(1_000);
  assert.deepEqual(b.output(9, 1), { type: "flood" }, "exactly one second later is still the same window");
  tick(1);
  assert.deepEqual(b.output(9, 1), { type: "drop" }, "a new window starts counting afresh");
  for (let i = 0; i < 29; i++) b.output(9, 1);
  assert.deepEqual(b.output(9, 1), { type: "flood" });
});

// ---------------------------------------------------------------------------------------------
// coalescing / unbulk

type _Post = { m: unknown; t: ArrayBuffer[] | undefined };

function _spy() {
  const posts: _Post[] = [];
  const send = coalescing<{ n: number }>((m, t) => posts.push({ m, t }));
  return { posts, send };
}

test("coalescing posts nothing synchronously, and a lone message of a turn as itself", async () => {
  const { posts, send } = _spy();
  send({ n: 1 });
  assert.deepEqual(posts, []);
  await _turn();
  assert.deepEqual(posts, [{ m: { n: 1 }, t: [] }]);
});

test("coalescing carries the messages of one turn in one bulk, in order, with all their transfers", async () => {
  const { posts, send } = _spy();
  const [x, y, z] = [new ArrayBuffer(1), new ArrayBuffer(2), new ArrayBuffer(3)];
  send({ n: 1 }, [x]);
  send({ n: 2 });
  send({ n: 3 }, [y, z]);
  await _turn();
  assert.equal(posts.length, 1);
  assert.deepEqual(posts[0]!.m, { type: "bulk", messages: [{ n: 1 }, { n: 2 }, { n: 3 }] });
  assert.equal(posts[0]!.t!.length, 3);
  assert.ok(posts[0]!.t![0] === x && posts[0]!.t![1] === y && posts[0]!.t![2] === z, "the very buffers, in order");
});

test("coalescing starts afresh after each flush, and a message sent while posting goes in the next", async () => {
  const posts: unknown[] = [];
  let again = true;
  const send: (m: number) => void = coalescing<number>((m) => {
    posts.push(m);
    if (again) {
      again = false;
      send(99);
    }
  });
  send(1);
  await _turn();
  assert.deepEqual(posts, [1]);
  await _turn();
  assert.deepEqual(posts, [1, 99]);
  send(2);
  send(3);
  await _turn();
  assert.deepEqual(posts, [1, 99, { type: "bulk", messages: [2, 3] }]);
});

test("unbulk calls each for every message of a bulk, in order, and for nothing in an empty bulk", () => {
  const seen: unknown[] = [];
  unbulk<number>({ type: "bulk", messages: [3, 1, 2] } satisfies Bulk<number>, (m) => seen.push(m));
  assert.deepEqual(seen, [3, 1, 2]);
  unbulk<number>({ type: "bulk", messages: [] }, (m) => seen.push(m));
  assert.deepEqual(seen, [3, 1, 2]);
});

test("unbulk hands over anything that is not a bulk once, as it is", () => {
  const seen: unknown[] = [];
  const plain = { type: "done", id: 1 };
  const fake = { type: "bulk", messages: "not a list" };
  for (const raw of [plain, fake, undefined, null, 7]) unbulk(raw, (m) => seen.push(m));
  assert.equal(seen.length, 5);
  assert.equal(seen[0], plain);
  assert.equal(seen[1], fake, "a bulk without a messages array is one message");
  assert.deepEqual(seen.slice(2), [undefined, null, 7]);
});

test("coalescing then unbulk gives back the messages sent, in order, in one turn or many", async () => {
  const got: number[] = [];
  const send = coalescing<number>((m) => unbulk<number>(m, (x) => got.push(x)));
  send(1);
  await _turn();
  send(2);
  send(3);
  send(4);
  await _turn();
  assert.deepEqual(got, [1, 2, 3, 4]);
});

test("slots: after the normal lane was served alone, waiting high readings go first again", async () => {
  const s = new Slots(1, 2);
  const order: string[] = [];
  const take = (lane: 0 | 1, name: string) => s.acquire(lane, 1).then(() => order.push(name));
  await s.acquire(0, 1); // the one slot is busy
  const wait = [take(1, "H1"), take(1, "H2"), take(0, "N1"), take(0, "N2")];
  for (let i = 0; i < 4; i++) {
    s.release(1);
    await Promise.resolve();
    await Promise.resolve();
  }
  await Promise.all(wait);
  const more = [take(0, "N3")];
  s.release(1);
  await Promise.all(more);
  const last = [take(1, "H3"), take(1, "H4"), take(0, "N4")];
  for (let i = 0; i < 3; i++) {
    s.release(1);
    await Promise.resolve();
    await Promise.resolve();
  }
  await Promise.all(last);
  assert.deepEqual(order, ["H1", "H2", "N1", "N2", "N3", "H3", "H4", "N4"]);
});
