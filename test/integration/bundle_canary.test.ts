/**
 * Canary releases of signed bundles: `outpost push --canary` runs the bundle's changed handlers
 * beside the active release on a share of the readings; within budget the whole bundle activates,
 * past it the release is marked failed with the reason and the active one keeps everything; each
 * reading is handled by one version; a kill -9 during the canary leaves the active release.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { bundles, makeBundle, makeKey, type TestKey } from "../_bundles.ts";
import { embeddedJsm, ingest, outpost, startHost, streamMessages, tempDir, waitFor, type TestHost } from "../_harness.ts";

const HANDLER = (v: string, extra = "") => `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "ota",
  schema: v.object({ n: v.number() }),
  concurrency: 4,
  timeoutMs: 2_000,
  retry: { maxAttempts: 4, backoff: [300] },
  async handle(r, ctx) { ${extra} await ctx.publish("ota", { n: r.n, v: ${JSON.stringify(v)} }); },
});
`;

describe("canary releases of bundles", () => {
  let host: TestHost;
  let key: TestKey;
  let dir: string;
  let workersDir: string;
  let dataDir: string;
  let next = 0;
  const args = () => ["--admin-token", "tok", "--trust", key.pubFile, "--probation-ms", "1000", "--probation-messages", "1000"];
  before(async () => {
    key = await makeKey();
    dir = await tempDir("outpost-bcanary-");
    workersDir = await tempDir("outpost-bcanary-workers-");
    dataDir = await tempDir("outpost-bcanary-data-");
    host = await startHost({ workersDir, dataDir, workers: { "ota.ts": HANDLER("w") }, args: args() });
  });
  after(async () => {
    await host?.stop();
  });
  const bundle = async (release: number, source: string) => {
    const file = join(dir, `r${release}.outpost`);
    await writeFile(file, await makeBundle({ release, handlers: { "ota.ts": source }, keys: [key] }));
    return file;
  };
  const push = (file: string, extra: string[]) => outpost(["push", file, "--to", host.url, "--admin-token", "tok", ...extra], 60_000, dir);
  const post = async (count: number): Promise<number[]> => {
    const ns = Array.from({ length: count }, () => next++);
    for (const n of ns) assert.equal((await ingest(host.url, "ota", JSON.stringify({ n }), "application/json")).status, 202);
    return ns;
  };
  const outputs = async (ns: number[]) => {
    const { nc, jsm } = await embeddedJsm(dataDir);
    try {
      return await waitFor(async () => {
        const m = (await streamMessages(jsm, "OUTBOX", "out.ota")).map((x) => x.value as { n: number; v: string }).filter((x) => ns.includes(x.n));
        return new Set(m.map((x) => x.n)).size === ns.length ? m : undefined;
      }, 45_000, `outputs of ${ns.length} readings`);
    } finally {
      await nc.close();
    }
  };
  const canaryState = (state: string) => waitFor(async () => {
    const b = await bundles(host.url);
    return b.canary?.state === state ? b : undefined;
  }, 40_000, `the canary release ${state}`);

  test("within budget: the bundle's handler takes its share, then the whole release activates; each reading handled once", async () => {
    const r = await push(await bundle(1, HANDLER("b1")), ["--canary", "50", "--canary-readings", "10", "--canary-for", "1m"]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /201 release 1: ota 1\.0\.1 runs as a canary on 50 % of the readings/);
    const running = await bundles(host.url);
    assert.equal(running.canary.state, "running");
    assert.equal(running.active.release, 0, "the active release is unchanged while the canary runs");
    assert.deepEqual(running.canary.handlers.map((h: { name: string }) => h.name), ["ota"]);
    assert.equal(running.staged.step, "canary");
    const ns = await post(60);
    const b = await canaryState("promoted");
    assert.match(b.canary.reason, /^ota: within budget after \d+ readings/);
    await waitFor(async () => (await bundles(host.url)).active.release === 1 ? true : undefined, 20_000, "release 1 active");
    const out = await outputs(ns);
    assert.equal(out.length, ns.length, "no reading handled by both versions");
    assert.deepEqual([...new Set(out.map((x) => x.v))].sort(), ["b1", "w"], "both versions took readings");
    const later = await post(5);
    assert.deepEqual((await outputs(later)).map((x) => x.v), ["b1", "b1", "b1", "b1", "b1"]);
    const after = await bundles(host.url);
    assert.equal(after.probation, null, "the canary stood in for probation");
    assert.equal(after.staged, null);
    assert.match(await (await host.api("/metrics")).text(), /outpost_canary_decisions_total\{handler="ota",outcome="promoted"\} 1/);
  });

  test("past the budget (fails 30 % of readings): rolled back, marked failed with the reason; nothing lost or handled twice, no dead letters", async () => {
    const r = await push(await bundle(2, HANDLER("b2", 'if (r.n % 10 < 3) throw new Error("b2 cannot take " + r.n);')), ["--canary", "50", "--canary-readings", "50"]);
    assert.equal(r.code, 0, r.out);
    const ns = await post(60);
    const b = await canaryState("rolled back");
    assert.match(b.canary.reason, /^ota: the canary's error rate \d+\.\d % \(\d+ of \d+ attempts\) is over the budget of 5\.0 %/);
    assert.equal(b.active.release, 1, "release 1 stays active");
    const failed = b.failed.find((f: { release: number }) => f.release === 2);
    assert.match(failed?.reason ?? "", /^canary rolled back: ota: the canary's error rate/);
    const out = await outputs(ns);
    assert.equal(out.length, ns.length, "each reading handled once, by one version");
    assert.ok(out.every((x) => x.v === "b1" || x.v === "b2"));
    const { nc, jsm } = await embeddedJsm(dataDir);
    try {
      assert.deepEqual(await streamMessages(jsm, "DLQ"), []);
    } finally {
      await nc.close();
    }
    // A failed release is not taken again.
    const again = await push(join(dir, "r2.outpost"), []);
    assert.equal(again.code, 1);
    assert.match(again.out, /409 .*release 2 .*failed/i);
  });

  test("kill -9 during a canary release: the host comes back on the active release, every reading handled", async () => {
    const r = await push(await bundle(3, HANDLER("b3")), ["--canary", "50", "--canary-readings", "100000", "--canary-for", "10m"]);
    assert.equal(r.code, 0, r.out);
    const ns = await post(20);
    host.proc.kill("SIGKILL");
    await host.exited;
    host = await startHost({ workersDir, dataDir, args: args() });
    const b = await bundles(host.url);
    assert.equal(b.active.release, 1);
    assert.equal(b.canary, null);
    assert.equal(b.staged, null);
    const more = await post(5);
    const out = await outputs([...ns, ...more]);
    assert.ok(out.filter((x) => more.includes(x.n)).every((x) => x.v === "b1"), "after the restart only the active release runs");
    // Release 3 was not marked failed: it can be pushed again.
    const again = await push(join(dir, "r3.outpost"), ["--canary", "50", "--canary-readings", "5"]);
    assert.equal(again.code, 0, again.out);
    await post(30);
    try {
      await canaryState("promoted");
    } catch (e) {
      console.log(JSON.stringify(await bundles(host.url), null, 1), host.logs().slice(-6000));
      throw e;
    }
  });
});
