import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rename, rm, writeFile } from "node:fs/promises";
import { ingest, join, startHost, startNats, streamMessages, waitFor, type Runtime, type TestHost, type TestNats } from "../_harness.ts";

const version = (v: string, schema = "v.object({ n: v.number() })") => `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "swap",
  schema: ${schema},
  concurrency: 4,
  timeoutMs: 2000,
  async handle(r, ctx) {
    await new Promise((res) => setTimeout(res, 2));
    await ctx.publish("swapped", { seq: ctx.seq, n: r.n, v: ${JSON.stringify(v)}, attempt: ctx.attempt });
  },
});
`;

type View = { name: string; version: string | null; status: string; swaps: number; loadError: { message: string } | null; lastSwap: { pauseMs: number | null } | null };
async function handler(host: TestHost, name: string): Promise<View | undefined> {
  const { handlers } = await (await host.api("/v1/handlers")).json();
  return handlers.find((h: View) => h.name === name);
}

/** Editors write a temp file and rename it over the original. */
async function editorWrite(dir: string, name: string, src: string) {
  const tmp = join(dir, `.${name}.swp`);
  await writeFile(tmp, src);
  await rename(tmp, join(dir, name));
}

for (const runtime of ["node", "bun"] as Runtime[]) {
  test(`on ${runtime}, replacing a handler three times under steady load acks every reading exactly once`, async (t) => {
    const nats = await startNats();
    const host = await startHost({ runtime, nats: nats.url, workers: { "swap.ts": version("v1") } });
    try {
      const first = (await handler(host, "swap"))!.version;
      const posted: number[] = [];
      let n = 0;
      // ~3000 readings over ~8 s: a request of 30 readings every 80 ms.
      const load = (async () => {
        for (let i = 0; i < 100; i++) {
          const batch = Array.from({ length: 30 }, () => ({ n: n++ }));
          const r = await ingest(host.url, "swap", JSON.stringify(batch), "application/json");
          assert.equal(r.status, 202, JSON.stringify(r.json));
          for (const x of r.json.results) posted.push(x.seq);
          await new Promise((res) => setTimeout(res, 80));
        }
      })();
      for (const [i, v] of ["v2", "v3", "v4"].entries()) {
        await new Promise((res) => setTimeout(res, 2_000));
        if (i === 1) await writeFile(join(host.workersDir, "swap.ts"), version(v));
        else await editorWrite(host.workersDir, "swap.ts", version(v));
        await waitFor(async () => (await handler(host, "swap"))?.swaps === i + 1, 10_000, `swap to ${v}`);
      }
      await load;
      const out = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.swapped");
        return m.length >= posted.length ? m : undefined;
      }, 30_000, `${posted.length} handled readings`);
      const seen = new Map<number, number>();
      for (const m of out) seen.set(m.value.seq, (seen.get(m.value.seq) ?? 0) + 1);
      const missing = posted.filter((s) => !seen.has(s));
      const twice = [...seen].filter(([, c]) => c > 1);
      assert.deepEqual(missing, [], "no reading missing");
      assert.deepEqual(twice, [], "no reading handled twice");
      assert.equal(out.length, 3000);
      assert.deepEqual([...new Set(out.map((m) => m.value.v))].sort(), ["v1", "v2", "v3", "v4"]);
      const c = await nats.jsm.consumers.info("INGEST", "outpost-swap");
      assert.equal(c.num_pending + c.num_ack_pending, 0);
      const redelivered = out.filter((m) => m.value.attempt > 1).length;
      const view = (await handler(host, "swap"))!;
      assert.equal(view.swaps, 3);
      assert.notEqual(view.version, first);
      assert.equal(typeof view.lastSwap?.pauseMs, "number");
      t.diagnostic(`${runtime}: 3000 readings, 3 swaps, redelivered ${redelivered} (consumer num_redelivered ${c.num_redelivered}), last swap pause ${view.lastSwap?.pauseMs} ms`);
    } finally {
      await host.stop();
      await nats.stop();
    }
  });
}

describe("broken versions, schema changes, new and removed files (Node)", () => {
  let nats: TestNats;
  let host: TestHost;
  before(async () => {
    nats = await startNats();
    host = await startHost({ nats: nats.url, workers: { "swap.ts": version("good") } });
  });
  after(async () => {
    await host?.stop();
    await nats?.stop();
  });

  async function servedBy(v: string) {
    const r = await ingest(host.url, "swap", JSON.stringify({ n: 1 }), "application/json");
    assert.equal(r.status, 202);
    const seq = r.json.results[0].seq;
    const m = await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.swapped")).find((x) => x.value.seq === seq), 10_000, "the reading handled");
    assert.equal(m.value.v, v);
  }

  const broken: [string, string, RegExp][] = [
    ["syntax error", "export default defineHandler({ topic: 'swap', handle( {", /^Cannot build handler swap\.ts: .*swap\.ts:\d+:\d+: /],
    ["import-time throw", "throw new RangeError('not today');\nexport default 1;", /^Handler swap failed to load: RangeError: not today$/],
    ["invalid export", "export default { topic: 'swap', handle: 42 };", /^Handler swap failed to load: TypeError: Invalid handler definition: `handle` must be a function$/],
    ["schema that is not a valibot schema", "export default { topic: 'swap', schema: { parse() {} }, handle() {} };",
      /^Handler swap failed to load: TypeError: Invalid handler definition: `schema` must be a valibot schema/],
  ];
  for (const [kind, src, message] of broken) {
    test(`a new version with a ${kind} is refused; the old version keeps serving`, async () => {
      const before = (await handler(host, "swap"))!;
      await writeFile(join(host.workersDir, "swap.ts"), src);
      const view = await waitFor(async () => {
        const h = await handler(host, "swap");
        return h?.loadError && message.test(h.loadError.message) ? h : undefined;
      }, 10_000, `the ${kind} to be reported`);
      assert.equal(view.status, "running");
      assert.equal(view.version, before.version);
      assert.match(host.logs(), new RegExp(`keeps running`));
      await servedBy("good");
    });
  }

  test("fixing the file swaps in the fixed version without a restart; a new schema changes what ingest accepts", async () => {
    await writeFile(join(host.workersDir, "swap.ts"), version("fixed", "v.object({ n: v.number(), unit: v.picklist(['C', 'F']) })"));
    await waitFor(async () => (await handler(host, "swap"))?.loadError === null, 10_000, "the fixed version");
    const refused = await ingest(host.url, "swap", JSON.stringify({ n: 1 }), "application/json");
    assert.equal(refused.status, 400);
    assert.equal(refused.json.path, "unit");
    const r = await ingest(host.url, "swap", JSON.stringify({ n: 2, unit: "C" }), "application/json");
    assert.equal(r.status, 202);
    const seq = r.json.results[0].seq;
    const m = await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.swapped")).find((x) => x.value.seq === seq), 10_000, "handled");
    assert.equal(m.value.v, "fixed");
  });

  test("a new file loads; a removed file's handler drains and stops, and its topic is no longer accepted", async () => {
    await writeFile(join(host.workersDir, "extra.ts"), version("extra").replace('topic: "swap"', 'topic: "extra"'));
    await waitFor(async () => (await handler(host, "extra"))?.status === "running", 10_000, "the new handler");
    assert.equal((await ingest(host.url, "extra", JSON.stringify({ n: 1 }), "application/json")).status, 202);
    await rm(join(host.workersDir, "extra.ts"));
    await waitFor(async () => (await handler(host, "extra")) === undefined, 10_000, "the removed handler to stop");
    const gone = await ingest(host.url, "extra", JSON.stringify({ n: 1 }), "application/json");
    assert.equal(gone.status, 404);
    await waitFor(() => /handler extra removed; its consumer outpost-extra keeps its position/.test(host.logs()), 5_000, "the removal to be logged");
  });
});
