/**
 * What a handler author meets while working: a change to a helper a handler imports reloads
 * that handler (blue/green, nothing lost), and `console.*` is the handler's log in both tiers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ingest, join, RUNTIMES, sleep, startHost, startNats, streamMessages, waitFor, writeFile } from "../_harness.ts";

const DEP = `
import { defineHandler } from "outpost/handler";
import { label } from "./_label.ts";
export default defineHandler({ topic: "dep", concurrency: 4, async handle(r, ctx) { await ctx.publish("dep", { n: r.n, label }); } });
`;
const label = (v: string) => `export const label = ${JSON.stringify(v)};\n`;

test("editing a helper a handler imports swaps that handler, and every reading is handled once", async () => {
  const nats = await startNats();
  const host = await startHost({ nats: nats.url, workers: { "_label.ts": label("v1"), "dep.ts": DEP }, args: ["--watch-debounce", "50"] });
  try {
    assert.equal((await ingest(host.url, "dep", JSON.stringify({ n: 0 }), "application/json")).status, 202);
    let n = 1;
    let sending = true;
    const load = (async () => {
      while (sending && n < 400) {
        assert.equal((await ingest(host.url, "dep", JSON.stringify({ n: n++ }), "application/json")).status, 202);
        await sleep(10);
      }
    })();
    await sleep(300);
    await writeFile(join(host.workersDir, "_label.ts"), label("v2"));
    await waitFor(async () => (await (await host.api("/v1/handlers")).json()).handlers[0].swaps === 1, 20_000, "the dependent swapped");
    await sleep(300);
    sending = false;
    await load;
    const out = await waitFor(async () => {
      const m = await streamMessages(nats.jsm, "OUTBOX", "out.dep");
      return m.length >= n ? m : undefined;
    }, 20_000, `${n} outputs`);
    const seen = out.map((m) => m.value.n).sort((a, b) => a - b);
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i), "each reading handled exactly once");
    const labels = new Set(out.map((m) => m.value.label));
    assert.deepEqual([...labels].sort(), ["v1", "v2"]);
    assert.equal(out.at(-1)!.value.label, "v2");
    assert.match(host.logs(), /_label\.ts changed: reloading handler dep, which imports it/);
  } finally {
    await host.stop();
    await nats.stop();
  }
});

test("console.* in a handler is its log in both tiers, attributed like ctx.log", async () => {
  const nats = await startNats();
  const handler = (tier: string) => `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "say.${tier}", isolation: "${tier}", async handle(r) { console.log("console says", r.word); console.error("and warns"); } });
`;
  const host = await startHost({ nats: nats.url, workers: { "say-worker.ts": handler("worker"), "say-wasm.ts": handler("wasm") } });
  try {
    for (const tier of ["worker", "wasm"]) {
      assert.equal((await ingest(host.url, `say.${tier}`, JSON.stringify({ word: `hi-${tier}` }), "application/json")).status, 202);
      await waitFor(() => new RegExp(`INFO  \\[say-${tier}\\] console says hi-${tier}`).test(host.logs()), 10_000, `${tier} console line`);
      await waitFor(() => new RegExp(`ERROR \\[say-${tier}\\] and warns`).test(host.logs()), 10_000, `${tier} console.error line`);
    }
    assert.doesNotMatch(host.logs(), /^console says/m, "nothing raw on stdout");
  } finally {
    await host.stop();
    await nats.stop();
  }
});

// A helper that throws, on a known line of the author's file: the frame must say that line.
const MAPPED = (tier: string) => `import { defineHandler } from "outpost/handler";

function check(r: { n: number }): void {
  if (r.n > 0) throw new Error("too big: " + r.n);
}

export default defineHandler({
  topic: "mapped.${tier}",
  isolation: "${tier}",
  retry: { maxAttempts: 1 },
  async handle(r: { n: number }) { check(r); },
});
`;

for (const runtime of RUNTIMES) {
  test(`on ${runtime}, a handler's error in DLQ, the log and lastError points at the author's file and line (both tiers)`, async () => {
    const nats = await startNats();
    const host = await startHost({ runtime, nats: nats.url, workers: { "mapped-worker.ts": MAPPED("worker"), "mapped-wasm.ts": MAPPED("wasm") } });
    try {
      for (const tier of ["worker", "wasm"]) {
        assert.equal((await ingest(host.url, `mapped.${tier}`, JSON.stringify({ n: 3 }), "application/json")).status, 202);
        const [dl] = await waitFor(async () => {
          const m = await streamMessages(nats.jsm, "DLQ", `dlq.mapped-${tier}`);
          return m.length ? m : undefined;
        }, 20_000, `the ${tier} DLQ entry`);
        const file = join(host.workersDir, `mapped-${tier}.ts`);
        const err = dl!.value.error;
        assert.equal(err.message, "too big: 3");
        assert.equal(err.at?.replace(/:\d+$/, ""), `${file}:4`, `${tier}: ${err.stack}`);
        assert.ok(err.stack.includes(`${file}:4:`), err.stack);
        assert.doesNotMatch(err.stack, /\.handler\.mjs|\.guest\.mjs/, "no frame left in the bundle");
        const view = (await (await host.api("/v1/handlers")).json()).handlers.find((h: { name: string }) => h.name === `mapped-${tier}`);
        assert.equal(view.lastError, `Error: too big: 3 (at ${err.at})`);
      }
      assert.match(host.logs(), /too big: 3 \(at \/[^)]*mapped-worker\.ts:4:\d+\); moved to DLQ/);
    } finally {
      await host.stop();
      await nats.stop();
    }
  });
}
