/**
 * Canary releases on a live host: the new version takes a share of the readings, chosen by reading
 * id; within budget it is promoted (its file replaces the handler's), past it rolled back; each
 * reading is handled by one version, none lost; a kill -9 leaves one consistent release.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { embeddedJsm, ingest, outpost, startHost, streamMessages, tempDir, waitFor, type TestHost } from "../_harness.ts";

const VERSION = (v: number, extra = "") => `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "meter",
  schema: v.object({ n: v.number() }),
  concurrency: 4,
  // A short timeout: after the kill -9, what the dead host held comes back after timeout + 5 s.
  timeoutMs: 2_000,
  retry: { maxAttempts: 4, backoff: [300] },
  async handle(r, ctx) { ${extra} await ctx.publish("meter.out", { n: r.n, v: ${v} }); },
});
`;

describe("canary releases", () => {
  let host: TestHost;
  let dir: string;
  let workersDir: string;
  let dataDir: string;
  let next = 0;
  before(async () => {
    dir = await tempDir("outpost-canary-");
    workersDir = await tempDir("outpost-canary-workers-");
    dataDir = await tempDir("outpost-canary-data-");
    host = await startHost({ workersDir, dataDir, workers: { "meter.ts": VERSION(1) } });
    await writeFile(join(dir, "v2.ts"), VERSION(2));
    await writeFile(join(dir, "v3.ts"), VERSION(3, 'if (r.n % 10 < 3) throw new Error("v3 cannot take " + r.n);'));
  });
  after(async () => {
    await host?.stop();
  });
  const cli = (args: string[]) => outpost([...args, "--url", host.url, "--data-dir", dataDir], 60_000, dir);
  const handler = async () => ((await (await host.api("/v1/handlers")).json()) as { handlers: { name: string; version: string; canary: any }[] }).handlers.find((h) => h.name === "meter")!;
  const post = async (count: number): Promise<number[]> => {
    const ns = Array.from({ length: count }, () => next++);
    for (const n of ns) assert.equal((await ingest(host.url, "meter", JSON.stringify({ n }), "application/json")).status, 202);
    return ns;
  };
  /** Every output of readings `ns`, waiting until each has one. */
  const outputs = async (ns: number[]) => {
    const { nc, jsm } = await embeddedJsm(dataDir);
    try {
      return await waitFor(async () => {
        const m = (await streamMessages(jsm, "OUTBOX", "out.meter.out")).map((x) => x.value as { n: number; v: number }).filter((x) => ns.includes(x.n));
        return new Set(m.map((x) => x.n)).size === ns.length ? m : undefined;
      }, 45_000, `outputs of ${ns.length} readings`);
    } finally {
      await nc.close();
    }
  };

  test("within budget: the canary takes its share, is promoted, its file replaces the handler's; each reading handled once", async () => {
    const before = (await handler()).version;
    const r = await cli(["canary", "start", "meter", "v2.ts", "--share", "50", "--readings", "10", "--for", "1m"]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /canary [0-9a-f]{12} running; 50 % of the readings beside [0-9a-f]{12}/);
    const ns = await post(60);
    const view = await waitFor(async () => {
      const c = (await handler()).canary;
      return c?.state === "promoted" ? c : undefined;
    }, 30_000, "the canary promoted");
    assert.match(view.reason, /^within budget after \d+ readings: error rate 0\.0 %/);
    await waitFor(async () => (await handler()).version === view.candidate, 20_000, "the swap to the promoted version");
    assert.notEqual(view.candidate, before);
    assert.equal(await readFile(join(workersDir, "meter.ts"), "utf8"), VERSION(2), "the handler's file is the promoted version");
    const out = await outputs(ns);
    assert.equal(out.length, ns.length, "no reading handled by both versions");
    const versions = new Set(out.map((x) => x.v));
    assert.deepEqual([...versions].sort(), [1, 2], "both versions took readings");
    const after = await post(5);
    assert.deepEqual((await outputs(after)).map((x) => x.v), [2, 2, 2, 2, 2]);
    assert.match(await (await host.api("/metrics")).text(), /outpost_canary_decisions_total\{handler="meter",outcome="promoted"\} 1/);
  });

  test("past the budget (a version failing 30 % of readings): rolled back with the reason; nothing lost, none handled twice, nothing dead-lettered", async () => {
    const before = (await handler()).version;
    const r = await cli(["canary", "start", "meter", "v3.ts", "--share", "50", "--readings", "50", "--for", "1m"]);
    assert.equal(r.code, 0, r.out);
    const ns = await post(60);
    const view = await waitFor(async () => {
      const c = (await handler()).canary;
      return c?.state === "rolled back" ? c : undefined;
    }, 30_000, "the canary rolled back");
    assert.match(view.reason, /^the canary's error rate \d+\.\d % \(\d+ of \d+ attempts\) is over the budget of 5\.0 %/);
    const out = await outputs(ns);
    assert.equal(out.length, ns.length, "each reading handled once, by one version");
    assert.equal((await handler()).version, before, "the active version stayed");
    assert.equal(await readFile(join(workersDir, "meter.ts"), "utf8"), VERSION(2));
    const { nc, jsm } = await embeddedJsm(dataDir);
    try {
      assert.deepEqual(await streamMessages(jsm, "DLQ"), []);
    } finally {
      await nc.close();
    }
    const status = await cli(["canary", "status", "meter"]);
    assert.match(status.out, /rolled back \(the canary's error rate/);
  });

  test("kill -9 during a canary: the host comes back with one consistent release, and every reading is handled", async () => {
    const before = (await handler()).version;
    const r = await cli(["canary", "start", "meter", "v3.ts", "--share", "50", "--readings", "100000", "--for", "10m", "--max-error-rate", "100"]);
    assert.equal(r.code, 0, r.out);
    const ns = await post(20);
    host.proc.kill("SIGKILL");
    await host.exited;
    host = await startHost({ workersDir, dataDir });
    const h = await handler();
    assert.equal(h.version, before);
    assert.equal(h.canary, null);
    const more = await post(5);
    const out = await outputs([...ns, ...more]);
    assert.ok(out.filter((x) => more.includes(x.n)).every((x) => x.v === 2), "after the restart only the release in the file runs");
  });
});
