/** `outpost/testing`'s invoke: outcomes, outputs, logs, the retry policy, a fixed clock, failing outputs. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { defineHandler, v } from "../../src/sdk/handler.ts";
import { invoke } from "../../src/sdk/testing.ts";

const alert = defineHandler({
  topic: "temperature",
  schema: v.object({ sensor: v.string(), celsius: v.number() }),
  retry: { maxAttempts: 3, backoff: [100, 500] },
  async handle(r, ctx) {
    ctx.log("seen", r.sensor);
    if (r.celsius < -273.15) throw new ctx.Permanent("below absolute zero");
    if (r.celsius > 1000) throw new Error("sensor glitch");
    if (r.celsius > 80) await ctx.publish("alerts", { ...r, at: new Date().toISOString(), now: Date.now() });
    await ctx.emit("temperature.seen", { sensor: r.sensor }, { delayMs: 5_000 });
  },
});

test("a reading that passes: ack, outputs after a CBOR round trip, logs, a fixed clock", async () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  const r = await invoke(alert, { sensor: "t1", celsius: 91, extra: 1 }, { now });
  assert.equal(r.outcome, "ack");
  assert.deepEqual(r.published, [{ subject: "alerts", value: { sensor: "t1", celsius: 91, at: "2026-01-01T00:00:00.000Z", now } }]);
  assert.deepEqual(r.emitted, [{ topic: "temperature.seen", value: { sensor: "t1" }, delayMs: 5_000 }]);
  assert.deepEqual(r.logs, [{ level: "info", message: "seen t1" }]);
  assert.notEqual(Date.now(), now, "the clock is back after the call");
});

test("a reading the schema refuses is rejected and handle never runs", async () => {
  const r = await invoke(alert, { sensor: 7 });
  assert.equal(r.outcome, "rejected");
  assert.deepEqual(r.issues.map((i) => i.path), ["sensor", "celsius"]);
  assert.deepEqual(r.logs, []);
});

test("a throw is retried with the policy's delay; the last attempt and Permanent dead-letter", async () => {
  const first = await invoke(alert, { sensor: "t1", celsius: 2000 });
  assert.deepEqual([first.outcome, first.retryInMs, first.error?.message], ["retry", 100, "sensor glitch"]);
  assert.equal((await invoke(alert, { sensor: "t1", celsius: 2000 }, { attempt: 2 })).retryInMs, 500);
  assert.equal((await invoke(alert, { sensor: "t1", celsius: 2000 }, { attempt: 3 })).outcome, "dead-letter");
  const permanent = await invoke(alert, { sensor: "t1", celsius: -300 });
  assert.deepEqual([permanent.outcome, permanent.error?.name], ["dead-letter", "PermanentError"]);
});

test("failPublish: outputs fail as with a broker that is down, per output when asked", async () => {
  const all = await invoke(alert, { sensor: "t1", celsius: 91 }, { failPublish: true });
  assert.equal(all.outcome, "retry");
  assert.match(all.error!.message, /ctx\.publish failed/);
  const emitOnly = await invoke(alert, { sensor: "t1", celsius: 91 }, { failPublish: (op) => op === "emit" });
  assert.equal(emitOnly.outcome, "retry");
  assert.equal(emitOnly.published.length, 1);
});

test("an invalid publish subject fails as it does in the host", async () => {
  const bad = defineHandler({ topic: "x", async handle(_r, ctx) { await ctx.publish("a.*", 1); } });
  const r = await invoke(bad, {});
  assert.equal(r.outcome, "retry");
  assert.match(r.error!.message, /invalid subject "a\.\*"/);
});

test("bytes, big integers and dates arrive as the wire carries them", async () => {
  let got: unknown;
  const h = defineHandler({ topic: "raw", async handle(r) { got = r; } });
  await invoke(h, { b: new Uint8Array([1, 2]), n: 2n ** 70n, d: new Date(0) });
  assert.deepEqual(got, { b: new Uint8Array([1, 2]), n: 2n ** 70n, d: new Date(0) });
});
