import { test } from "node:test";
import assert from "node:assert/strict";
import { ingest, lastSeq, startHost, startNats, streamMessages, waitFor } from "../_harness.ts";

test("kill -9 of the host mid-handler loses nothing: the restarted host handles every reading", async (t) => {
  const nats = await startNats();
  const workers = {
    "slowpoke.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "slow", concurrency: 5, timeoutMs: 1000,
  async handle(r, ctx) { await new Promise((res) => setTimeout(res, 600)); await ctx.publish("slow", { n: r.n, attempt: ctx.attempt }); },
});`,
  };
  const first = await startHost({ nats: nats.url, workers });
  const second = { host: undefined as Awaited<ReturnType<typeof startHost>> | undefined };
  try {
    assert.equal((await ingest(first.url, "slow", JSON.stringify(Array.from({ length: 5 }, (_, n) => ({ n }))), "application/json")).status, 202);
    await waitFor(async () => (await nats.jsm.consumers.info("INGEST", "outpost-slowpoke")).num_ack_pending === 5, 5_000, "5 in flight");
    first.proc.kill("SIGKILL");
    await first.exited;
    assert.equal((await streamMessages(nats.jsm, "OUTBOX")).length, 0, "none finished before the kill");
    second.host = await startHost({ nats: nats.url, workersDir: first.workersDir });
    const out = await waitFor(async () => {
      const m = await streamMessages(nats.jsm, "OUTBOX", "out.slow");
      return m.length >= 5 ? m : undefined;
    }, 20_000, "all 5 handled after the restart");
    assert.deepEqual(out.map((m) => m.value.n).sort(), [0, 1, 2, 3, 4]);
    assert.ok(out.every((m) => m.value.attempt === 2), "each was delivered again once");
    t.diagnostic(`redelivered after the ack wait (timeout 1000 ms + 5000 ms)`);
  } finally {
    await second.host?.stop();
    await nats.stop();
  }
});

test("kill -9 between a handler's success and its ack: redelivered at least once, and dedupe removes the duplicate", async () => {
  const nats = await startNats();
  const handler = (name: string, dedupe: string) => `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "pay", timeoutMs: 1000, ${dedupe}
  async handle(r, ctx) { await ctx.publish(${JSON.stringify(name)}, { id: r.id, attempt: ctx.attempt }); },
});`;
  const workers = { "plain.ts": handler("plain", ""), "once.ts": handler("once", `dedupe: { key: "id" },`) };
  const first = await startHost({ nats: nats.url, workers, env: { OUTPOST_FAULT_ACK_DELAY_MS: "3000" } });
  let second: Awaited<ReturnType<typeof startHost>> | undefined;
  try {
    assert.equal((await ingest(first.url, "pay", JSON.stringify({ id: "tx-1" }), "application/json")).status, 202);
    // Both handlers succeeded (their output is stored) but have not acked yet: kill now.
    await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX")).length === 2, 5_000, "both handlers done");
    first.proc.kill("SIGKILL");
    await first.exited;
    second = await startHost({ nats: nats.url, workersDir: first.workersDir });
    await waitFor(async () => {
      const [a, b] = await Promise.all(["outpost-plain", "outpost-once"].map((c) => nats.jsm.consumers.info("INGEST", c)));
      return a!.num_ack_pending + a!.num_pending + b!.num_ack_pending + b!.num_pending === 0 && a!.ack_floor.stream_seq === 1 && b!.ack_floor.stream_seq === 1;
    }, 20_000, "both consumers acked the reading");
    const plain = await streamMessages(nats.jsm, "OUTBOX", "out.plain");
    const once = await streamMessages(nats.jsm, "OUTBOX", "out.once");
    assert.deepEqual(plain.map((m) => m.value.attempt), [1, 2], "at least once: the plain handler ran again");
    assert.deepEqual(once.map((m) => m.value.attempt), [1], "dedupe skipped the redelivery");
    const { handlers } = await (await second.api("/v1/handlers")).json();
    assert.equal(handlers.find((h: { name: string }) => h.name === "once").counts.deduped, 1);
  } finally {
    await second?.stop();
    await nats.stop();
  }
});

test("kill -9 of nats-server during an ingest burst: every 2xx reading is stored once; client retries come back as duplicates", async (t) => {
  const nats = await startNats();
  const host = await startHost({
    nats: nats.url,
    workers: {
      "sink.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "burst", concurrency: 16, async handle(r, ctx) { await ctx.publish("burst", { id: r.id }); } });`,
    },
  });
  try {
    const N = 400;
    const acked = new Set<number>();
    let duplicates = 0;
    let refused = 0;
    let killed = false;
    const send = async (id: number) => {
      // A sensor retries until it hears 2xx; bounded.
      for (let attempt = 0; attempt < 100; attempt++) {
        const r = await ingest(host.url, "burst", JSON.stringify({ id }), "application/json", { "idempotency-key": `r-${id}` }).catch(() => ({ status: 0, json: {} as any }));
        if (r.status === 202) {
          acked.add(id);
          if (r.json.results[0].duplicate) duplicates++;
          return;
        }
        refused++;
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    const burst = (async () => {
      const queue = Array.from({ length: N }, (_, i) => i);
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let id = queue.shift(); id !== undefined; id = queue.shift()) await send(id);
      }));
    })();
    await waitFor(() => acked.size >= N / 4, 20_000, "a quarter of the burst");
    await nats.kill();
    killed = true;
    await new Promise((res) => setTimeout(res, 1_000));
    await nats.restart();
    await burst;
    assert.ok(killed);
    assert.equal(acked.size, N, "every reading eventually got a 2xx");
    // A sensor that never heard its 2xx (the answer was lost) sends again: a duplicate, not stored.
    // (Readings stored after the broker restart: a restarted server rebuilds its duplicate window
    // only from messages still in the stream, and handled readings have left INGEST.)
    for (const id of [N - 5, N - 4, N - 3, N - 2, N - 1]) {
      const r = await ingest(host.url, "burst", JSON.stringify({ id }), "application/json", { "idempotency-key": `r-${id}` });
      assert.equal(r.status, 202);
      assert.equal(r.json.results[0].duplicate, true);
      duplicates++;
    }
    const stored = await lastSeq(nats.jsm, "INGEST");
    assert.equal(stored, N, "stored exactly once each: the retries were recognised as duplicates");
    const out = await waitFor(async () => {
      const m = await streamMessages(nats.jsm, "OUTBOX", "out.burst");
      return new Set(m.map((x) => x.value.id)).size >= N ? m : undefined;
    }, 30_000, "every stored reading handled");
    t.diagnostic(`${N} readings: ${refused} refused while the broker was down, ${duplicates} retries answered as duplicates, ${out.length} handler outputs`);
  } finally {
    await host.stop();
    await nats.stop();
  }
});
