import { test } from "node:test";
import assert from "node:assert/strict";
import { ingest, RUNTIMES, startHost, startNats, streamMessages, waitFor } from "../_harness.ts";

const bad = (topic: string, body: string, extra = "") => `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: ${JSON.stringify(topic)},
  retry: { maxAttempts: 2, backoff: [20] },
  ${extra}
  async handle(r, ctx) { ${body} },
});
`;

const HANDLERS = {
  "healthy.ts": `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "ok", concurrency: 4, async handle(r, ctx) { await ctx.publish("ok", { i: r.i }); } });
`,
  "uncaught.ts": bad("uncaught", `setTimeout(() => { throw new Error("thrown from a timer"); }, 0); await new Promise((res) => setTimeout(res, 500));`),
  "rejection.ts": bad("rejection", `Promise.reject(new Error("nobody caught me")); await new Promise((res) => setTimeout(res, 500));`),
  "exit.ts": bad("exit", `(globalThis.Deno ?? globalThis.process).exit(3);`),
  // Deno's process is loaded only when read (the trap follows it there): the same answer.
  "procexit.ts": bad("procexit", `globalThis.process.exit(4);`),
  "loop.ts": bad("loop", `for (;;) {}`, "timeoutMs: 300,"),
  "oom.ts": bad("oom", `const keep = []; for (;;) keep.push(new Array(1e6).fill(Math.random()));`, "memoryMb: 32, timeoutMs: 20000,"),
};

/** [topic, DLQ error name, message pattern, runtimes where it applies]. */
const EXPECTED: [string, string, RegExp, string[]][] = [
  ["uncaught", "IsolateCrashedError", /^Isolate of uncaught crashed: uncaught (Error: )?.*thrown from a timer/, RUNTIMES],
  ["rejection", "IsolateCrashedError", /^Isolate of rejection crashed: uncaught .*nobody caught me/, RUNTIMES],
  ["exit", "IsolateCrashedError", /^Isolate of exit crashed: exit\(3\) attempt$/, RUNTIMES],
  ["procexit", "IsolateCrashedError", /^Isolate of procexit crashed: exit\(4\) attempt$/, RUNTIMES],
  ["loop", "HandlerTimeoutError", /^Handler loop did not finish within 300 ms$/, RUNTIMES],
  ["oom", "IsolateCrashedError", /^Isolate of oom crashed: out of memory$/, ["node"]],
];

for (const runtime of RUNTIMES) {
  test(`on ${runtime}, crashing, looping${runtime === "node" ? " and memory-hungry" : ""} handlers are contained`, async (t) => {
    const nats = await startNats();
    const workers: Record<string, string> = { ...HANDLERS };
    if (runtime !== "node") delete workers["oom.ts"]; // Deno and Bun enforce no heap limit for workers
    const host = await startHost({ runtime, nats: nats.url, workers });
    const health: number[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        health.push((await fetch(`${host.url}/healthz`).catch(() => ({ status: 0 }))).status);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      const expected = EXPECTED.filter(([, , , rts]) => rts.includes(runtime));
      for (const [topic] of expected) assert.equal((await ingest(host.url, topic, "{}", "application/json")).status, 202);
      // Steady healthy load meanwhile: 40 requests of 5 readings, one every 50 ms.
      let sent = 0;
      for (let i = 0; i < 40; i++) {
        const batch = Array.from({ length: 5 }, () => ({ i: sent++ }));
        assert.equal((await ingest(host.url, "ok", JSON.stringify(batch), "application/json")).status, 202);
        await new Promise((r) => setTimeout(r, 50));
      }
      const ok = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.ok");
        return m.length >= sent ? m : undefined;
      }, 20_000, "the healthy handler's readings");
      assert.equal(ok.length, 200, "the healthy handler handled every reading once");
      const dlq = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "DLQ");
        return m.length >= expected.length ? m : undefined;
      }, 60_000, "every bad handler's message in DLQ");
      for (const [topic, name, message] of expected) {
        const entry = dlq.find((d) => d.value.handler === topic);
        assert.ok(entry, `${topic} dead-lettered`);
        assert.equal(entry.value.attempts, 2, `${topic} retried once`);
        assert.equal(entry.value.error.name, name, `${topic}: ${entry.value.error.message}`);
        assert.match(entry.value.error.message, message);
      }
      const { handlers } = await (await host.api("/v1/handlers")).json();
      for (const [topic] of expected) {
        const h = handlers.find((x: { name: string }) => x.name === topic);
        assert.ok(h.counts.crashes >= 2 || topic === "loop", `${topic} crashed and was restarted (${h.counts.crashes})`);
        assert.equal(h.counts.deadLettered, 1);
      }
      watching = false;
      await watcher;
      assert.ok(health.length > 10);
      assert.deepEqual([...new Set(health)], [200], "the host answered /healthz throughout");
      const oom = handlers.find((x: { name: string }) => x.name === "oom");
      if (oom) assert.deepEqual([oom.limits.memoryMb, oom.limits.memoryEnforced], [32, true]);
      else {
        const h = handlers.find((x: { name: string }) => x.name === "healthy");
        assert.equal(h.limits.memoryEnforced, false, `${runtime} reports that it does not enforce memoryMb`);
      }
      t.diagnostic(`${runtime}: ${health.length} health checks, all 200`);
    } finally {
      watching = false;
      await watcher;
      await host.stop();
      await nats.stop();
    }
  });
}

test("a handler that crashes in a loop is marked crashing and backs off; its messages wait in the stream", async () => {
  const nats = await startNats();
  const host = await startHost({
    nats: nats.url,
    workers: { "crashy.ts": bad("crashy", `(globalThis.Deno ?? globalThis.process).exit(1);`).replace("maxAttempts: 2", "maxAttempts: 50") },
  });
  try {
    for (let i = 0; i < 3; i++) assert.equal((await ingest(host.url, "crashy", "{}", "application/json")).status, 202);
    const view = await waitFor(async () => {
      const { handlers } = await (await host.api("/v1/handlers")).json();
      return handlers[0].status === "crashing" ? handlers[0] : undefined;
    }, 20_000, "status crashing");
    assert.ok(view.counts.crashes >= 3);
    assert.match(view.lastError, /isolate crashed: exit\(1\) attempt/);
    const c = await nats.jsm.consumers.info("INGEST", "outpost-crashy");
    assert.equal(c.num_pending + c.num_ack_pending, 3, "the messages wait, none lost");
    assert.equal((await streamMessages(nats.jsm, "DLQ")).length, 0);
    assert.equal((await fetch(`${host.url}/healthz`)).status, 200);
    // Alive, but not ready: /readyz names the crash-looping handler.
    const ready = await fetch(`${host.url}/readyz`);
    assert.equal(ready.status, 503);
    const body = await ready.json();
    assert.deepEqual(body.handlers.crashing, ["crashy"]);
    assert.ok(body.reasons.includes("handler crashy is crash-looping (three crashes within a minute)"), JSON.stringify(body.reasons));
  } finally {
    await host.stop();
    await nats.stop();
  }
});
