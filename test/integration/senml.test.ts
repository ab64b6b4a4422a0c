import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { encodeCbor } from "../../src/codec/cbor.ts";
import { ingest, RUNTIMES, startHost, startNats, streamMessages, waitFor, type TestHost, type TestNats } from "../_harness.ts";

// Handlers that publish each reading they get: one per resolved record, and one per pack.
const RECORDS = `import { defineHandler, SenmlRecord } from "outpost/handler";
export default defineHandler({
  topic: "meter",
  senml: "records",
  schema: SenmlRecord,
  handle(r, ctx) { ctx.publish("meter.out", { r, seq: ctx.seq }); },
});
`;
const PACK = `import { defineHandler, SenmlRecord, v } from "outpost/handler";
export default defineHandler({
  topic: "meterpack",
  senml: "pack",
  isolation: "wasm",
  schema: v.array(SenmlRecord),
  handle(records, ctx) { ctx.publish("meterpack.out", { n: records.length, names: records.map((x) => x.n), seq: ctx.seq }); },
});
`;

const DEV = "urn:dev:ow:10e2073a01080063";
const DEV6 = "urn:dev:ow:10e2073a0108006:";
const BT = 1.276020076001e9;
// RFC 8428 §5.1.2, second example, in JSON; §6 gives the same pack in CBOR (the RFC's own dump).
const EX2_JSON = [
  { bn: DEV6, bt: BT, bu: "A", bver: 5, n: "voltage", u: "V", v: 120.1 },
  { n: "current", t: -5, v: 1.2 }, { n: "current", t: -4, v: 1.3 }, { n: "current", t: -3, v: 1.4 },
  { n: "current", t: -2, v: 1.5 }, { n: "current", t: -1, v: 1.6 }, { n: "current", v: 1.7 },
];
const EX2_CBOR = Buffer.from(
  "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b00106223614120050067766f6c7461676501615602fb405e066666666666a3006763757272656e740624" +
    "02fb3ff3333333333333a3006763757272656e74062302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6666666666666a3006763757272656e74062102f93e00a3006763757272656e7406" +
    "2002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333333333",
  "hex",
);
// Resolved (§4.6): names concatenated, times absolute, unit from the base, chronological order, version kept.
const EX2_RESOLVED = [
  ...[1.2, 1.3, 1.4, 1.5, 1.6].map((v, i) => ({ n: `${DEV6}current`, t: BT - 5 + i, u: "A", v, bver: 5 })),
  { n: `${DEV6}voltage`, t: BT, u: "V", v: 120.1, bver: 5 },
  { n: `${DEV6}current`, t: BT, u: "A", v: 1.7, bver: 5 },
];
// §5.1.5 multiple data types, in JSON and as CBOR with the integer labels of §6 (vd a byte string).
const EX5_JSON = [{ bn: `${DEV}:`, n: "temp", u: "Cel", v: 23.1 }, { n: "label", vs: "Machine Room" }, { n: "open", vb: false }, { n: "nfv-reader", vd: "aGkgCg" }];
const EX5_CBOR = encodeCbor([
  new Map<number, unknown>([[-2, `${DEV}:`], [0, "temp"], [1, "Cel"], [2, 23.1]]),
  new Map<number, unknown>([[0, "label"], [3, "Machine Room"]]),
  new Map<number, unknown>([[0, "open"], [4, false]]),
  new Map<number, unknown>([[0, "nfv-reader"], [8, new Uint8Array([0x68, 0x69, 0x20, 0x0a])]]),
]);

for (const runtime of RUNTIMES) {
  describe(`SenML ingest on ${runtime}`, () => {
    let nats: TestNats;
    let host: TestHost;
    before(async () => {
      nats = await startNats();
      host = await startHost({ runtime, nats: nats.url, workers: { "records.ts": RECORDS, "pack.ts": PACK } });
    });
    after(async () => {
      await host?.stop();
      await nats?.stop();
    });

    const handled = async (subject: string, n: number) => await waitFor(async () => {
      const m = await streamMessages(nats.jsm, "OUTBOX", subject);
      return m.length >= n ? m : undefined;
    }, 15_000, `${n} results on ${subject}`);

    test("RFC 8428 §5.1.2 in JSON and the RFC's own §6 CBOR dump: the handler gets the same resolved records, one reading each", async () => {
      for (const [body, type] of [[JSON.stringify(EX2_JSON), "application/senml+json"], [EX2_CBOR, "application/senml+cbor"]] as const) {
        const before = (await streamMessages(nats.jsm, "OUTBOX", "out.meter.out")).length;
        const r = await ingest(host.url, "meter", body, type);
        assert.equal(r.status, 202, JSON.stringify(r.json));
        assert.equal(r.json.accepted, 7);
        const out = (await handled("out.meter.out", before + 7)).slice(before);
        const seqs = r.json.results.map((x: { seq: number }) => x.seq);
        assert.deepEqual(out.map((m) => m.value.r), seqs.map((s: number) => EX2_RESOLVED[seqs.indexOf(s)]));
        assert.deepEqual(out.map((m) => m.value.r).sort((a, b) => a.t - b.t || a.n.localeCompare(b.n)), [...EX2_RESOLVED].sort((a, b) => a.t - b.t || a.n.localeCompare(b.n)));
      }
    });

    test("RFC 8428 §5.1.5 in JSON and CBOR: number, string, boolean and data values; relative times taken at ingest", async () => {
      for (const [body, type] of [[JSON.stringify(EX5_JSON), "application/senml+json"], [EX5_CBOR, "application/senml+cbor"]] as const) {
        const before = (await streamMessages(nats.jsm, "OUTBOX", "out.meter.out")).length;
        const t0 = Date.now() / 1000;
        const r = await ingest(host.url, "meter", body, type);
        assert.equal(r.status, 202, JSON.stringify(r.json));
        const got = (await handled("out.meter.out", before + 4)).slice(before).map((m) => m.value.r);
        const t = got[0].t;
        assert.ok(t >= Math.floor(t0) - 1 && t <= Date.now() / 1000 + 1, `time ${t} is the time of ingest`);
        assert.deepEqual(got, [
          { n: `${DEV}:temp`, t, u: "Cel", v: 23.1 },
          { n: `${DEV}:label`, t, vs: "Machine Room" },
          { n: `${DEV}:open`, t, vb: false },
          { n: `${DEV}:nfv-reader`, t, vd: new Uint8Array([0x68, 0x69, 0x20, 0x0a]) },
        ]);
      }
    });

    test("a topic that wants packs gets the resolved pack as one reading (wasm tier)", async () => {
      const r = await ingest(host.url, "meterpack", EX2_CBOR, "application/senml+cbor");
      assert.equal(r.status, 202, JSON.stringify(r.json));
      assert.equal(r.json.accepted, 1);
      const [m] = await handled("out.meterpack.out", 1);
      assert.equal(m!.value.n, 7);
      assert.deepEqual(m!.value.names, EX2_RESOLVED.map((x) => x.n));
    });

    test("invalid packs are 400 naming the record and the label; nothing is stored", async () => {
      const cases: [unknown, string, number, string | undefined][] = [
        [[{ n: "a", v: 1 }, { n: "b", v: 2, vs: "x" }], 'SenML record 1: label "vs" together with "v": a record holds one value', 1, "vs"],
        [[{ u: "Cel", v: 1 }], 'SenML record 0: no name (neither "bn" nor "n")', 0, "n"],
        [[{ n: "a", v: 1, foo_: 1 }], 'SenML record 0: unknown label "foo_" (labels ending in _ must be understood)', 0, "foo_"],
      ];
      const before = (await nats.jsm.streams.info("INGEST")).state.last_seq;
      for (const [pack, message, index, label] of cases) {
        for (const [body, type] of [[JSON.stringify(pack), "application/senml+json"], [encodeCbor(pack), "application/senml+cbor"]] as const) {
          const r = await ingest(host.url, "meter", body, type);
          assert.equal(r.status, 400, `${type} ${JSON.stringify(pack)}`);
          assert.equal(r.json.error, "invalid_senml");
          assert.equal(r.json.message, `${message}; nothing was stored`);
          assert.equal(r.json.index, index);
          assert.equal(r.json.label, label);
        }
      }
      const r = await ingest(host.url, "meter", "[{", "application/senml+json");
      assert.equal(r.status, 400);
      assert.equal(r.json.error, "malformed_body");
      assert.equal((await nats.jsm.streams.info("INGEST")).state.last_seq, before);
    });
  });
}
