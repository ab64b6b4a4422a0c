/**
 * One trace id follows a reading: from the sensor's `traceparent` (or one ingest starts) through
 * the stored message to `ctx.trace` in both tiers, to OUTBOX, to a reading a handler emits and to
 * a DLQ entry; and `--log-format json` writes one JSON object per line with the fields that apply.
 * On Node, Deno and Bun.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ingest, RUNTIMES, startHost, startNats, streamMessages, waitFor } from "../_harness.ts";

const FIRST = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "t1", async handle(r, ctx) {
  ctx.log("first got", r.n);
  await ctx.publish("t1", { n: r.n, trace: ctx.trace });
  await ctx.emit("t2", { n: r.n });
} });
`;
const SECOND = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "t2", isolation: "wasm", async handle(r, ctx) { await ctx.publish("t2", { n: r.n, trace: ctx.trace }); } });
`;
const FAILS = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "t3", retry: { maxAttempts: 2, backoff: [50] }, async handle(r) { throw new Error("no " + r.n); } });
`;

const traceOf = (tp: string | undefined | null) => /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/.exec(tp ?? "")?.slice(1) ?? [];

for (const runtime of RUNTIMES) {
  test(`on ${runtime}: trace context from the sensor to OUTBOX, emits and DLQ; JSON log lines`, async () => {
    const nats = await startNats();
    const host = await startHost({ runtime, nats: nats.url, workers: { "first.ts": FIRST, "second.ts": SECOND, "fails.ts": FAILS }, args: ["--log-format", "json"] });
    try {
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      const sent = `00-${traceId}-00f067aa0ba902b7-01`;
      const r = await ingest(host.url, "t1", JSON.stringify({ n: 1 }), "application/json", { traceparent: sent, tracestate: "vendor=x" });
      assert.equal(r.status, 202);
      const [answerTrace, answerSpan] = traceOf(r.headers.get("traceparent"));
      assert.equal(answerTrace, traceId, "ingest answers in the sensor's trace");
      assert.notEqual(answerSpan, "00f067aa0ba902b7", "with a span of its own");

      const [out1] = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.t1");
        return m.length ? m : undefined;
      }, 20_000, "out.t1");
      assert.equal(out1!.value.trace.traceId, traceId, "ctx.trace in the worker tier");
      assert.equal(out1!.value.trace.tracestate, "vendor=x");
      assert.equal(traceOf(out1!.headers?.get("traceparent"))[0], traceId, "the OUTBOX message's traceparent");
      assert.notEqual(traceOf(out1!.headers?.get("traceparent"))[1], out1!.value.trace.spanId, "a publish is a span of its own");
      const [out2] = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.t2");
        return m.length ? m : undefined;
      }, 20_000, "out.t2 (the emitted reading, handled in the wasm tier)");
      assert.equal(out2!.value.trace.traceId, traceId, "ctx.trace in the wasm tier, through ctx.emit");
      assert.equal(traceOf(out2!.headers?.get("traceparent"))[0], traceId);

      // Without a traceparent (or with an invalid one) ingest starts a trace.
      const fresh = await ingest(host.url, "t3", JSON.stringify({ n: 3 }), "application/json", { traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01" });
      const [freshTrace] = traceOf(fresh.headers.get("traceparent"));
      assert.ok(freshTrace && freshTrace !== "0".repeat(32));
      const [dl] = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "DLQ", "dlq.fails");
        return m.length ? m : undefined;
      }, 20_000, "the DLQ entry");
      assert.equal(traceOf(dl!.value.traceparent)[0], freshTrace, "the DLQ entry keeps the trace");
      assert.equal(traceOf(dl!.headers?.get("traceparent"))[0], freshTrace);

      // Every line is one JSON object; the handler's and the dispatcher's lines carry their message.
      const lines = host.logs().split("\n").filter((l) => l.trim() && !l.startsWith("["));
      const entries = lines.map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          throw new Error(`not a JSON log line: ${l}`);
        }
      });
      for (const e of entries) assert.ok(typeof e.ts === "string" && typeof e.level === "string" && typeof e.msg === "string", JSON.stringify(e));
      const said = entries.find((e) => e.msg === "first got 1");
      assert.ok(said, "the handler's ctx.log line");
      assert.deepEqual([said!.handler, said!.topic, said!.attempt, typeof said!.seq], ["first", "t1", 1, "number"]);
      const retry = entries.find((e) => e.handler === "fails" && /retrying in/.test(String(e.msg)));
      assert.ok(retry, "the retry line");
      assert.equal(retry!.traceId, freshTrace);
      assert.equal(typeof retry!.durationMs, "number");
      assert.equal(retry!.level, "warn");
    } finally {
      await host.stop();
      await nats.stop();
    }
  });
}
