/**
 * Record and replay: a topic's readings kept in a bounded recording, exported as a CBOR sequence,
 * and fed to `outpost replay`, which runs a candidate beside the version it would replace with no
 * side effects and says what differs.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cborDecode } from "../../src/codec/cbor_data.ts";
import { encodeCbor, scanCbor } from "../../src/codec/cbor.ts";
import { embeddedJsm, ingest, outpost, startHost, streamMessages, tempDir, type TestHost } from "../_harness.ts";

const METER = (body: string) => `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "meter",
  schema: v.object({ n: v.number() }),
  record: { maxBytes: 2 * 1024 * 1024, maxAge: 3_600_000 },
  retry: { maxAttempts: 3 },
  async handle(r, ctx) { ${body} },
});
`;
const BASE = METER(`await ctx.publish("meter.twice", { twice: r.n * 2 });`);
const OTHER = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "other", async handle() {} });
`;

describe("record and replay", () => {
  let host: TestHost;
  let dir: string;
  before(async () => {
    dir = await tempDir("outpost-replay-");
    host = await startHost({ workers: { "meter.ts": BASE, "other.ts": OTHER }, args: ["--record", "other"] });
    await writeFile(join(dir, "meter.ts"), BASE);
  });
  after(async () => {
    await host?.stop();
  });

  const cli = (args: string[]) => outpost([...args, "--url", host.url, "--data-dir", host.dataDir], 60_000, dir);

  test("a recorded topic keeps every stored reading in its own bounded stream; export writes them as a CBOR sequence", async () => {
    assert.equal((await ingest(host.url, "meter", JSON.stringify([{ n: 1 }, { n: 2 }]), "application/json")).status, 202);
    assert.equal((await ingest(host.url, "meter", encodeCbor({ n: 3 }), "application/cbor")).status, 202);
    assert.equal((await ingest(host.url, "meter", '{"n":"x"}', "application/json")).status, 400); // refused: not recorded
    const { nc, jsm } = await embeddedJsm(host.dataDir);
    try {
      const info = await jsm.streams.info("RECORD_meter");
      assert.equal(info.config.max_bytes, 2 * 1024 * 1024);
      assert.equal(info.config.max_age, 3_600_000 * 1e6);
      assert.equal(info.config.retention, "limits");
      assert.deepEqual(info.config.subjects, ["record.meter"]);
      assert.equal(info.state.messages, 3);
      // The handler consumed INGEST as usual.
      assert.equal((await streamMessages(jsm, "OUTBOX", "out.meter.twice")).length, 3);
    } finally {
      await nc.close();
    }
    const r = await cli(["record", "export", "meter", "--out", "meter.cbor"]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /3 readings of meter \(\d+ bytes\) written to meter\.cbor/);
    const bytes = new Uint8Array(await readFile(join(dir, "meter.cbor")));
    assert.deepEqual(scanCbor(bytes, true).map(([s, e]) => cborDecode(bytes.subarray(s, e))), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    const none = await cli(["record", "export", "meter", "--since", new Date(Date.now() + 60_000).toISOString(), "--out", "none.cbor"]);
    assert.match(none.out, /0 readings of meter/);
  });

  test("--record records a topic whose handler does not ask; a topic nobody records is 404", async () => {
    assert.equal((await ingest(host.url, "other", '{"a":1}', "application/json")).status, 202);
    const res = await host.api("/v1/record/other");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/cbor-seq");
    assert.equal(res.headers.get("outpost-record-count"), "1");
    const missing = await host.api("/v1/record/nothing");
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: string }).error, "not_recorded");
    assert.equal((await fetch(`${host.url}/v1/record/meter`)).status, 401, "the recording needs the admin token");
  });

  test("outpost test reads the exported file: one reading per item", async () => {
    const r = await outpost(["test", "meter.ts", "-r", "meter.cbor"], 60_000, dir);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /reading meter\.cbor#2: schema ok\n  publish out\.meter\.twice \{"twice":6\}/);
  });

  test("replay: an identical candidate is reported identical, exit 0", async () => {
    await writeFile(join(dir, "same.ts"), BASE);
    const r = await cli(["replay", "same.ts", "--readings", "meter.cbor", "--against", "meter.ts"]);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out, "3 readings: 3 same, 0 different output, 0 new failures, 0 fixed, 0 failing differently (the candidate is identical on these readings)\n");
  });

  test("replay: a changed output is shown per reading; --fail-on differences makes it exit 1", async () => {
    await writeFile(join(dir, "thrice.ts"), METER(`await ctx.publish("meter.twice", { twice: r.n * (r.n === 2 ? 3 : 2) });`));
    const r = await cli(["replay", "thrice.ts", "--readings", "meter.cbor", "--against", "meter.ts"]);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out, 'reading meter.cbor#1: different output\n  - publish out.meter.twice {"twice":4}\n  + publish out.meter.twice {"twice":6}\n' +
      "3 readings: 2 same, 1 different output, 0 new failures, 0 fixed, 0 failing differently\n");
    assert.equal((await cli(["replay", "thrice.ts", "-r", "meter.cbor", "--against", "meter.ts", "--fail-on", "differences"])).code, 1);
  });

  test("replay: a new failure makes it exit 1; a fixed failure is counted as fixed", async () => {
    await writeFile(join(dir, "breaks.ts"), METER(`if (r.n >= 3) throw new Error("cannot handle " + r.n); await ctx.publish("meter.twice", { twice: r.n * 2 });`));
    const broken = await cli(["replay", "breaks.ts", "--readings", "meter.cbor", "--against", "meter.ts"]);
    assert.equal(broken.code, 1, broken.out);
    assert.match(broken.out, /reading meter\.cbor#2: new failure\n  - publish out\.meter\.twice \{"twice":6\}\n  \+ retry: Error: cannot handle 3\n/);
    assert.match(broken.out, /3 readings: 2 same, 0 different output, 1 new failure, 0 fixed/);
    const fixed = await cli(["replay", "meter.ts", "--readings", "meter.cbor", "--against", "breaks.ts", "--json"]);
    assert.equal(fixed.code, 0, fixed.out);
    const j = JSON.parse(fixed.out) as { counts: Record<string, number>; rows: { verdict: string }[] };
    assert.equal(j.counts["fixed failure"], 1);
    assert.deepEqual(j.rows.map((x) => x.verdict), ["same", "same", "fixed failure"]);
  });

  test("replay --topic takes the host's recording and compares with its active version; nothing is stored", async () => {
    const { nc, jsm } = await embeddedJsm(host.dataDir);
    try {
      const before = (await jsm.streams.info("OUTBOX")).state.last_seq;
      // Named like the active handler (a handler's name is its file's).
      await mkdir(join(dir, "cand"), { recursive: true });
      await writeFile(join(dir, "cand", "meter.ts"), BASE.replace("meter.twice", "meter.double"));
      const r = await cli(["replay", join("cand", "meter.ts"), "--topic", "meter"]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /3 readings: 0 same, 3 different output/);
      assert.match(r.out, /- publish out\.meter\.twice \{"twice":2\}\n  \+ publish out\.meter\.double \{"twice":2\}/);
      assert.equal((await jsm.streams.info("OUTBOX")).state.last_seq, before, "replay stored nothing");
    } finally {
      await nc.close();
    }
  });
});
