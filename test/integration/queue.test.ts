import { test } from "node:test";
import assert from "node:assert/strict";
import { ingest, startHost, startNats, streamMessages, waitFor, type TestNats } from "../_harness.ts";

const handled = (nats: TestNats, subject: string, n: number, timeoutMs = 20_000) =>
  waitFor(async () => {
    const m = await streamMessages(nats.jsm, "OUTBOX", `out.${subject}`);
    return m.length >= n ? m : undefined;
  }, timeoutMs, `${n} messages on out.${subject}`);

test("backoff delays between attempts follow the policy; a permanent error skips retries", async (t) => {
  const nats = await startNats();
  const host = await startHost({
    nats: nats.url,
    workers: {
      "slowfail.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "slowfail",
  retry: { maxAttempts: 4, backoff: [300, 600, 900], jitter: 0 },
  async handle(r, ctx) { await ctx.publish("tries", { attempt: ctx.attempt, at: Date.now() }); throw new Error("again"); },
});`,
    },
  });
  try {
    assert.equal((await ingest(host.url, "slowfail", "{}", "application/json")).status, 202);
    const tries = (await handled(nats, "tries", 4)).map((m) => m.value);
    assert.deepEqual(tries.map((x) => x.attempt), [1, 2, 3, 4]);
    const gaps = tries.slice(1).map((x, i) => x.at - tries[i].at);
    t.diagnostic(`gaps between attempts: ${gaps.join(", ")} ms (policy 300, 600, 900)`);
    for (const [i, want] of [300, 600, 900].entries()) {
      assert.ok(gaps[i]! >= want - 20 && gaps[i]! < want + 400, `gap ${i + 1} is ${gaps[i]} ms, wanted about ${want}`);
    }
    const dl = await waitFor(async () => (await streamMessages(nats.jsm, "DLQ")).at(0), 5_000, "DLQ");
    assert.equal(dl.value.attempts, 4);
  } finally {
    await host.stop();
    await nats.stop();
  }
});

test("a rate limit holds within tolerance over a few seconds", async (t) => {
  const nats = await startNats();
  const host = await startHost({
    nats: nats.url,
    workers: {
      "limited.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "limited",
  concurrency: 8,
  rateLimit: { perSecond: 20, burst: 5 },
  async handle(r, ctx) { await ctx.publish("limited", { n: r.n, at: Date.now() }); },
});`,
    },
  });
  try {
    const batch = Array.from({ length: 65 }, (_, n) => ({ n }));
    assert.equal((await ingest(host.url, "limited", JSON.stringify(batch), "application/json")).status, 202);
    const out = (await handled(nats, "limited", 65, 20_000)).map((m) => m.value.at).sort((a, b) => a - b);
    const seconds = (out.at(-1)! - out[0]!) / 1000;
    const rate = (out.length - 5) / seconds; // the burst goes at once
    t.diagnostic(`65 readings in ${seconds.toFixed(2)} s: ${rate.toFixed(1)}/s after the burst (limit 20/s, burst 5)`);
    assert.ok(rate <= 20 * 1.15 && rate >= 20 * 0.7, `rate ${rate.toFixed(1)}/s`);
  } finally {
    await host.stop();
    await nats.stop();
  }
});

test("high-priority readings overtake a backlog of normal ones, which still get their share", async (t) => {
  const nats = await startNats();
  const host = await startHost({
    nats: nats.url,
    workers: {
      "prio.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "prio",
  concurrency: 1,
  priority: { weight: 4, field: "urgent" },
  async handle(r, ctx) {
    await new Promise((res) => setTimeout(res, 10));
    await ctx.publish("prio", { n: r.n, high: !!r.urgent || r.kind === "h", topic: ctx.topic });
  },
});`,
    },
  });
  try {
    // A backlog of 100 normal readings, then 20 high ones (10 by header, 10 by field).
    assert.equal((await ingest(host.url, "prio", JSON.stringify(Array.from({ length: 100 }, (_, n) => ({ n }))), "application/json")).status, 202);
    assert.equal((await ingest(host.url, "prio", JSON.stringify(Array.from({ length: 10 }, (_, n) => ({ n: 1000 + n, kind: "h" }))), "application/json", { "outpost-priority": "high" })).status, 202);
    assert.equal((await ingest(host.url, "prio", JSON.stringify(Array.from({ length: 10 }, (_, n) => ({ n: 2000 + n, urgent: true }))), "application/json")).status, 202);
    const order = (await handled(nats, "prio", 120, 30_000)).map((m) => m.value);
    const lastHigh = order.findLastIndex((v) => v.high);
    const normalBefore = order.slice(0, lastHigh + 1).filter((v) => !v.high).length;
    t.diagnostic(`all 20 high readings done by position ${lastHigh + 1} of 120; ${normalBefore} normal ones were served meanwhile`);
    assert.ok(lastHigh < 60, `high readings finished early (last at ${lastHigh})`);
    assert.ok(normalBefore >= 3, "normal readings were not starved while high ones waited");
    assert.deepEqual(new Set(order.map((v) => v.topic)), new Set(["prio"]), "ctx.topic is the topic, whatever the lane");
    assert.equal(new Set(order.map((v) => v.n)).size, 120);
  } finally {
    await host.stop();
    await nats.stop();
  }
});

test("batches arrive with the configured size and wait; one bad item is retried alone", async () => {
  const nats = await startNats();
  const host = await startHost({
    nats: nats.url,
    workers: {
      "batched.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "batched",
  batch: { size: 10, maxWaitMs: 300 },
  retry: { maxAttempts: 2, backoff: [50] },
  async handleBatch(readings, ctx) {
    readings.forEach((r, i) => { if (r.bad) ctx.fail(i, new Error("bad item " + r.n)); });
    await ctx.publish("batches", { size: readings.length, ns: readings.map((r) => r.n), at: Date.now() });
  },
});`,
    },
  });
  try {
    const t0 = Date.now();
    assert.equal((await ingest(host.url, "batched", JSON.stringify(Array.from({ length: 23 }, (_, n) => ({ n, bad: n === 5 }))), "application/json")).status, 202);
    const [dl] = await waitFor(async () => {
      const m = await streamMessages(nats.jsm, "DLQ");
      return m.length ? m : undefined;
    }, 10_000, "the bad item in DLQ");
    const batches = (await streamMessages(nats.jsm, "OUTBOX", "out.batches")).map((m) => m.value);
    assert.deepEqual(batches.slice(0, 2).map((b) => b.ns), [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]]);
    const rest = batches.slice(2);
    assert.ok(rest.every((b) => b.size < 10), "the rest came in partial batches");
    assert.ok(rest[0].at - t0 >= 250, "a partial batch waited for maxWaitMs");
    // The retried bad item travels with the later readings, alone among the ones seen before.
    assert.deepEqual(rest.flatMap((b) => b.ns).sort((a: number, b: number) => a - b), [5, 20, 21, 22], "only the bad item came back");
    assert.deepEqual([dl!.value.attempts, dl!.value.error.message], [2, "bad item 5"]);
    const { handlers } = await (await host.api("/v1/handlers")).json();
    assert.equal(handlers[0].counts.acked, 22);
  } finally {
    await host.stop();
    await nats.stop();
  }
});

test("dedupe skips a reading sent again with the same key, beyond the stream's duplicate window", async () => {
  const nats = await startNats();
  const host = await startHost({
    nats: nats.url,
    workers: {
      "once.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "once",
  dedupe: { key: ["sensor", "at"], ttlMs: 3600000 },
  async handle(r, ctx) { await ctx.publish("once", r); },
});`,
    },
  });
  try {
    const reading = JSON.stringify({ sensor: "s1", at: "2026-11-23T07:00:00Z", v: 1 });
    assert.equal((await ingest(host.url, "once", reading, "application/json")).status, 202);
    await handled(nats, "once", 1);
    // No Idempotency-Key: the stream stores it again; dedupe must catch it.
    const again = await ingest(host.url, "once", reading, "application/json");
    assert.equal(again.status, 202);
    assert.equal(again.json.results[0].duplicate, undefined);
    assert.equal((await ingest(host.url, "once", JSON.stringify({ sensor: "s1", at: "2026-11-23T07:00:01Z", v: 2 }), "application/json")).status, 202);
    await handled(nats, "once", 2);
    await waitFor(async () => {
      const { handlers } = await (await host.api("/v1/handlers")).json();
      return handlers[0].counts.deduped === 1;
    }, 5_000, "one reading deduped");
    assert.deepEqual((await streamMessages(nats.jsm, "OUTBOX", "out.once")).map((m) => m.value.v), [1, 2]);
    const kv = await nats.jsm.streams.info("KV_outpost_dedupe_once");
    assert.equal(kv.state.messages, 2);
    assert.equal(kv.config.max_age, 3600000 * 1e6);
  } finally {
    await host.stop();
    await nats.stop();
  }
});

test("a delayed reading is stored at once and not handled before its time, also across a restart", async () => {
  const nats = await startNats();
  const workers = {
    "later.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "later",
  async handle(r, ctx) {
    await ctx.publish("later", { ...r, at: Date.now() });
    if (r.chain) await ctx.emit("later", { n: r.n + 1, due: Date.now() + 800 }, { delayMs: 800 });
  },
});`,
  };
  let host = await startHost({ nats: nats.url, workers });
  try {
    const due = Date.now() + 2_500;
    const r = await ingest(host.url, "later", JSON.stringify({ n: 1, due }), "application/json", { "not-before": new Date(due).toISOString() });
    assert.equal(r.status, 202);
    assert.equal(r.json.notBefore, new Date(due).toISOString());
    assert.equal((await nats.jsm.streams.info("INGEST")).state.messages, 1, "stored at once");
    assert.equal((await ingest(host.url, "later", JSON.stringify({ n: 10, chain: true, due: 0 }), "application/json")).status, 202);
    // Restart the host while the first reading waits.
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(await host.stop(), 0);
    host = await startHost({ nats: nats.url, workersDir: host.workersDir });
    const out = (await handled(nats, "later", 3, 15_000)).map((m) => m.value);
    for (const v of out) assert.ok(v.at >= v.due, `reading ${v.n} handled at ${v.at}, due ${v.due}`);
    assert.deepEqual(out.map((v) => v.n).sort((a, b) => a - b), [1, 10, 11]);
    const bad = await ingest(host.url, "later", "{}", "application/json", { "not-before": "soon" });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json, { error: "invalid_not_before", message: 'Not-Before "soon" is not a date (ISO 8601, HTTP date, or epoch milliseconds)' });
  } finally {
    await host.stop();
    await nats.stop();
  }
});

test("back-pressure: past the high-water mark ingest answers 429 with Retry-After, and recovers as the handler drains", async (t) => {
  const nats = await startNats();
  const host = await startHost({
    nats: nats.url,
    args: ["--max-backlog", "20"],
    workers: {
      "slow.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "slow", async handle() { await new Promise((res) => setTimeout(res, 100)); } });`,
    },
  });
  try {
    let refused;
    for (let i = 0; i < 30 && !refused; i++) {
      const before = (await nats.jsm.streams.info("INGEST")).state.last_seq;
      const r = await ingest(host.url, "slow", JSON.stringify(Array.from({ length: 10 }, (_, n) => ({ n }))), "application/json");
      if (r.status === 429) {
        refused = r;
        assert.equal((await nats.jsm.streams.info("INGEST")).state.last_seq, before, "a refused request stores nothing");
      } else assert.equal(r.status, 202);
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(refused, "ingest turned to 429");
    assert.equal(refused.json.error, "backlog");
    assert.match(refused.json.message, /^Handler slow has \d+ readings waiting \(high-water mark 20\); try again later; nothing was stored$/);
    const retryAfter = Number(refused.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 300, `Retry-After ${retryAfter}`);
    t.diagnostic(`429 with Retry-After ${retryAfter} s (${refused.json.message})`);
    const ok = await waitFor(async () => {
      const r = await ingest(host.url, "slow", JSON.stringify({ n: 99 }), "application/json");
      return r.status === 202 ? r : undefined;
    }, 30_000, "ingest to accept again");
    assert.equal(ok.json.accepted, 1);
  } finally {
    await host.stop();
    await nats.stop();
  }
});
