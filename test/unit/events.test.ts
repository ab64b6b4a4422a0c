/** The live tail's bus: filters, sampling past the rate, and a slow reader losing (and being told) events. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventBus, type TailEvent } from "../../src/metrics/events.ts";

const outcome = (handler: string, seq: number): TailEvent => ({ type: "outcome", ts: "t", handler, outcome: "acked", seq });

test("filters by handler and level; outcomes pass any level", async () => {
  const bus = new EventBus();
  const ac = new AbortController();
  const got: TailEvent[] = [];
  const done = (async () => {
    for await (const e of bus.subscribe({ handler: "a", level: "warn" }, ac.signal)) {
      got.push(e);
      if (got.length === 2) ac.abort();
    }
  })();
  await new Promise((r) => setTimeout(r, 0));
  bus.publish(outcome("b", 1));
  bus.publish({ type: "log", ts: "t", level: "info", scope: "a", msg: "quiet", handler: "a" });
  bus.publish({ type: "log", ts: "t", level: "error", scope: "a", msg: "loud", handler: "a" });
  bus.publish(outcome("a", 2));
  await done;
  assert.deepEqual(got.map((e) => (e.type === "log" ? e.msg : e.type === "outcome" ? e.seq : e.type)), ["loud", 2]);
  assert.equal(bus.active, false, "the subscriber is gone once aborted");
});

test("past maxPerSecond events are sampled away, and the reader is told how many", async () => {
  const bus = new EventBus({ maxPerSecond: 5, maxQueue: 100 });
  const ac = new AbortController();
  const got: TailEvent[] = [];
  const done = (async () => {
    for await (const e of bus.subscribe({}, ac.signal)) {
      got.push(e);
      if (e.type === "dropped") ac.abort();
    }
  })();
  await new Promise((r) => setTimeout(r, 0));
  for (let i = 0; i < 20; i++) bus.publish(outcome("a", i));
  await done;
  assert.equal(got.filter((e) => e.type === "outcome").length, 5);
  const d = got.find((e) => e.type === "dropped");
  assert.deepEqual(d && d.type === "dropped" ? [d.count, d.reason] : [], [15, "sampled"]);
});
