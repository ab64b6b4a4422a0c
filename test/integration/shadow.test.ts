/**
 * Shadow runs on a live host: a candidate gets a copy of every reading the active version gets,
 * its outputs are compared and never stored, its failures never reach the DLQ, and it stops by
 * itself.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { embeddedJsm, ingest, outpost, startHost, streamMessages, tempDir, waitFor, type TestHost } from "../_harness.ts";

const METER = (body: string, topic = "meter") => `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: ${JSON.stringify(topic)},
  schema: v.object({ n: v.number() }),
  retry: { maxAttempts: 2, backoff: [50] },
  async handle(r, ctx) { ${body} },
});
`;
const ACTIVE = METER(`await ctx.publish("meter.twice", { twice: r.n * 2 });`);

describe("shadow runs", () => {
  let host: TestHost;
  let dir: string;
  before(async () => {
    dir = await tempDir("outpost-shadow-");
    host = await startHost({ workers: { "meter.ts": ACTIVE } });
    await writeFile(join(dir, "candidate.ts"), METER(`if (r.n === 3) throw new Error("no 3"); await ctx.publish("meter.twice", { twice: r.n * (r.n === 2 ? 3 : 2) });`));
    await writeFile(join(dir, "elsewhere.ts"), METER("", "other"));
  });
  after(async () => {
    await host?.stop();
  });
  const cli = (args: string[]) => outpost([...args, "--url", host.url, "--data-dir", host.dataDir], 60_000, dir);

  test("a candidate beside the active version: compared reading by reading, nothing of it stored, ends by itself", async () => {
    const started = await cli(["shadow", "start", "meter", "candidate.ts", "--readings", "6", "--for", "2m"]);
    assert.equal(started.code, 0, started.out);
    assert.match(started.out, /^meter: shadow [0-9a-f]{12} running; 0 of 6 readings compared/);
    const { nc, jsm } = await embeddedJsm(host.dataDir);
    try {
      assert.equal((await jsm.consumers.info("INGEST", "outpost-meter-shadow")).config.deliver_policy, "new");
      for (let n = 1; n <= 6; n++) assert.equal((await ingest(host.url, "meter", JSON.stringify({ n }), "application/json")).status, 202);
      const view = await waitFor(async () => {
        const { handlers } = await (await host.api("/v1/handlers")).json() as { handlers: { name: string; shadow: any }[] };
        const s = handlers.find((h) => h.name === "meter")!.shadow;
        return s?.state === "finished" ? s : undefined;
      }, 20_000, "the shadow to finish");
      assert.equal(view.endReason, "compared 6 readings");
      assert.equal(view.compared, 6);
      assert.deepEqual(view.counts, { agreed: 4, "different output": 1, "new failure": 1, "fixed failure": 0, "both failed": 0 });
      assert.equal(view.agreement, 4 / 6);
      assert.deepEqual(view.examples.map((x: { verdict: string }) => x.verdict), ["different output", "new failure"]);
      assert.match(view.examples[1].shadow, /^failed: Error: no 3/);
      // Only the active version's outputs were stored, and the candidate's failure is in no DLQ.
      const out = await waitFor(async () => {
        const m = await streamMessages(jsm, "OUTBOX", "out.meter");
        return m.length >= 6 ? m : undefined;
      }, 10_000, "the active version's six outputs");
      assert.deepEqual(out.map((m) => m.value.twice), [2, 4, 6, 8, 10, 12]);
      assert.deepEqual(await streamMessages(jsm, "DLQ"), []);
      // Its consumer goes (just after the comparison ends): INGEST keeps nothing for it.
      await waitFor(async () => jsm.consumers.info("INGEST", "outpost-meter-shadow").then(() => false, (e: Error) => /consumer not found/.test(e.message)), 10_000, "the shadow's consumer to go");
      await waitFor(async () => (await jsm.streams.info("INGEST")).state.messages === 0, 10_000, "INGEST to empty");
      const metrics = await (await host.api("/metrics")).text();
      assert.match(metrics, /outpost_shadow_readings_total\{handler="meter",verdict="new failure"\} 1/);
      assert.match(metrics, /outpost_shadow_readings_total\{handler="meter",verdict="agreed"\} 4/);
      const status = await cli(["shadow", "status", "meter"]);
      assert.match(status.out, /6 of 6 readings compared, agreement 66\.7 %\n  agreed 4, different output 1, new failures 1, fixed 0, both failed 0/);
    } finally {
      await nc.close();
    }
  });

  test("stop ends a shadow run by hand; a candidate on other readings is refused; changes need the admin token", async () => {
    const started = await cli(["shadow", "start", "meter", "candidate.ts"]);
    assert.equal(started.code, 0, started.out);
    const again = await cli(["shadow", "start", "meter", "candidate.ts"]);
    assert.equal(again.code, 1);
    assert.match(again.out, /409 A shadow of meter runs already; stop it first/);
    const stopped = await cli(["shadow", "stop", "meter"]);
    assert.equal(stopped.code, 0, stopped.out);
    assert.match(stopped.out, /finished \(stopped by the operator\)/);
    const other = await cli(["shadow", "start", "meter", "elsewhere.ts"]);
    assert.equal(other.code, 1);
    assert.match(other.out, /400 The candidate does not run: The candidate consumes ingest\.other, the active version ingest\.meter/);
    const anon = await fetch(`${host.url}/v1/handlers/meter/shadow`, { method: "DELETE" });
    assert.equal(anon.status, 401);
    assert.equal((await host.api("/v1/handlers/nobody/shadow", { method: "DELETE" })).status, 404);
  });
});
