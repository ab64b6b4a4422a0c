import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ingest, RUNTIMES, startHost, startNats, streamMessages, waitFor, type TestHost, type TestNats } from "../_harness.ts";
import { APPENDIX_A, cbor2CompareGot, cbor2Encoded } from "../_cbor2.ts";

// A handler with no schema that publishes what it got: OUTBOX must hold, in `got`, the data item
// the sensor posted, as Debian's python3-cbor2 (an independent decoder) reads both.
const echo = (topic: string, isolation: "worker" | "wasm") => `import { defineHandler, isTag } from "outpost/handler";
export default defineHandler({
  topic: ${JSON.stringify(topic)},
  isolation: ${JSON.stringify(isolation)},
  retry: { maxAttempts: 1 },
  handle(r, ctx) {
    const kind = r instanceof Map ? "Map" : r instanceof Uint8Array ? "bytes" : r instanceof Date ? "Date" : isTag(r) ? "Tag" : typeof r;
    ctx.publish(${JSON.stringify(`${topic}.out`)}, { got: r, seq: ctx.seq, kind });
  },
});
`;

const bytes = (hex: string) => Buffer.from(hex, "hex");

for (const runtime of RUNTIMES) {
  describe(`exact CBOR on ${runtime}: what a sensor sends is what the handler gets and publishes`, () => {
    let nats: TestNats;
    let host: TestHost;
    before(async () => {
      nats = await startNats();
      host = await startHost({ runtime, nats: nats.url, workers: { "echo.ts": echo("cbor.echo", "worker"), "echowasm.ts": echo("cbor.wasm", "wasm") } });
    });
    after(async () => {
      await host?.stop();
      await nats?.stop();
    });

    for (const [topic, tier] of [["cbor.echo", "worker"], ["cbor.wasm", "wasm"]] as const) {
      test(`${tier} tier: all 81 RFC 8949 Appendix A examples and what cbor2 encodes come back out equal`, async () => {
        const vectors = [...APPENDIX_A.map(([h]) => h), ...(await cbor2Encoded()).map(([, h]) => h)];
        const r = await ingest(host.url, topic, Buffer.concat(vectors.map(bytes)), "application/cbor-seq");
        assert.equal(r.status, 202, JSON.stringify(r.json));
        assert.equal(r.json.accepted, vectors.length);
        const seqToIndex = new Map<number, number>(r.json.results.map((x: { index: number; seq: number }) => [x.seq, x.index]));
        const out = await waitFor(async () => {
          const m = await streamMessages(nats.jsm, "OUTBOX", `out.${topic}.out`);
          return m.length >= vectors.length ? m : undefined;
        }, 30_000, `${vectors.length} results in OUTBOX`);
        assert.equal(out.length, vectors.length);
        const pairs = out.map((m) => [vectors[seqToIndex.get(m.value.seq)!]!, m.data] as [string, Uint8Array]);
        const verdicts = await cbor2CompareGot(pairs);
        verdicts.forEach((v, i) => assert.equal(v, "same", `reading ${pairs[i]![0]}`));
        const kindOf = (hex: string) => out.find((m) => vectors[seqToIndex.get(m.value.seq)!] === hex)!.value.kind;
        assert.equal(kindOf("a201020304"), "Map"); // {1: 2, 3: 4} keeps its integer keys
        assert.equal(kindOf("5f42010243030405ff"), "bytes");
        assert.equal(kindOf("c074323031332d30332d32315432303a30343a30305a"), "Date");
        assert.equal(kindOf("d82076687474703a2f2f7777772e6578616d706c652e636f6d"), "Tag");
        assert.equal(kindOf("c249010000000000000000"), "bigint");
      });
    }

    test("simple(24) as 0xf818, not well-formed under RFC 8949, is answered 400 and stores nothing", async () => {
      const before = (await nats.jsm.streams.info("INGEST")).state.last_seq;
      const r = await ingest(host.url, "cbor.echo", bytes("f818"), "application/cbor");
      assert.equal(r.status, 400);
      assert.equal(r.json.error, "malformed_body");
      assert.equal(r.json.message, "Malformed CBOR at byte 2: invalid simple value 24");
      assert.equal((await nats.jsm.streams.info("INGEST")).state.last_seq, before);
    });
  });
}
