/**
 * Property-based fuzzing of the ingest decoders (fast-check), bounded in time: whatever the bytes,
 * decodeBody answers readings or a MalformedBodyError, never another error, a hang or a crash;
 * CBOR and JSON accept and refuse the same values; a mutated valid body is handled the same way.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { DEFAULT_CBOR_LIMITS, encodeCbor } from "../../src/codec/cbor.ts";
import { decodeBody, MalformedBodyError, MEDIA_TYPES, SenmlError } from "../../src/ingest/decode.ts";
import { resolveSenml } from "../../src/codec/senml.ts";
import { SenmlRecord } from "../../src/sdk/senml.ts";
import * as v from "valibot";

const LIMITS = { ...DEFAULT_CBOR_LIMITS, maxItems: 10_000 };
// Each property runs at most this long in the suite (more runs where the machine is fast).
const BUDGET = { numRuns: 20_000, interruptAfterTimeLimit: 4_000, markInterruptAsFailure: false } as const;

function outcome(mediaType: string, body: Uint8Array): "ok" | "refused" {
  try {
    const { readings, raw } = decodeBody(mediaType, body, LIMITS);
    assert.ok(Array.isArray(readings));
    if (raw) assert.equal(raw.length, readings.length);
    for (const r of readings) encodeCbor(r); // what was accepted can be stored
    return "ok";
  } catch (e) {
    if (e instanceof MalformedBodyError || e instanceof SenmlError) return "refused";
    throw e;
  }
}

test("fuzz: arbitrary bytes are decoded or refused with MalformedBodyError, in every media type", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), fc.constantFrom(...Object.values(MEDIA_TYPES)), (bytes, mediaType) => {
      outcome(mediaType, bytes);
    }),
    BUDGET,
  );
});

// Byte shapes the scanner has branches for: headers with every additional-information value,
// tags (bignums among them), breaks, and text that is not UTF-8.
const cborish = fc.array(
  fc.oneof(
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom(0x18, 0x19, 0x1a, 0x1b, 0x5f, 0x7f, 0x9f, 0xbf, 0xff, 0xc2, 0xc3, 0xc4, 0xd8, 0xf9, 0xfa, 0xfb, 0x69),
  ),
  { maxLength: 256 },
).map((a) => new Uint8Array(a));

test("fuzz: CBOR-shaped bytes (headers, tags, breaks) are decoded or refused, never crash", () => {
  fc.assert(fc.property(cborish, fc.boolean(), (bytes, seq) => void outcome(seq ? MEDIA_TYPES.cborSeq : MEDIA_TYPES.cbor, bytes)), BUDGET);
});

const reading = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", maxDepth: 40 },
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.string({ maxLength: 8, unit: "binary" }),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.oneof(fc.string({ maxLength: 6 }), fc.constant("__proto__")), tie("value"), { maxKeys: 3 }),
  ),
})).value;

test("fuzz: CBOR and JSON accept and refuse the same readings, and agree on what they hold", () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string({ maxLength: 6 }), reading, { maxKeys: 3 }), (r) => {
      const asJson = new TextEncoder().encode(JSON.stringify(r));
      const asCbor = encodeCbor(r);
      const j = outcome(MEDIA_TYPES.json, asJson);
      const c = outcome(MEDIA_TYPES.cbor, asCbor);
      assert.equal(c, j, `CBOR ${c}, JSON ${j} for ${JSON.stringify(r)}`);
      if (j === "ok") {
        const fromJson = decodeBody(MEDIA_TYPES.json, asJson, LIMITS).readings[0];
        const fromCbor = decodeBody(MEDIA_TYPES.cbor, asCbor, LIMITS).readings[0];
        assert.equal(JSON.stringify(fromCbor), JSON.stringify(fromJson));
      }
    }),
    BUDGET,
  );
});

test("fuzz: a valid body with bytes flipped, cut or spliced is decoded or refused, never crash", () => {
  const valid = fc.array(fc.dictionary(fc.string({ maxLength: 6 }), reading, { maxKeys: 3 }), { minLength: 1, maxLength: 4 })
    .map((rs) => new Uint8Array(rs.flatMap((r) => [...encodeCbor(r)])));
  const edit = fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }), cut: fc.boolean() });
  fc.assert(
    fc.property(valid, fc.array(edit, { minLength: 1, maxLength: 4 }), (body, edits) => {
      let b = body.slice();
      for (const e of edits) {
        const at = e.at % Math.max(1, b.length);
        if (e.cut) b = b.subarray(0, at);
        else b[at] = e.byte;
      }
      outcome(MEDIA_TYPES.cborSeq, b);
    }),
    BUDGET,
  );
});

// SenML: packs built from the RFC's labels (and some it does not have), with values of every type.
const LABELS = ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut", "x", "x_"] as const;
const CBOR_LABEL: Record<string, number | string> = { bver: -1, bn: -2, bt: -3, bu: -4, bv: -5, bs: -6, n: 0, u: 1, v: 2, vs: 3, vb: 4, s: 5, t: 6, ut: 7, vd: 8, x: "x", x_: "x_" };
const senmlValue = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: -5, max: 2 ** 31 }), fc.boolean(),
  fc.constantFrom("urn:dev:", "temp", "Cel", "aGkgCg", "", "bad name", "a/b"), fc.constant(null),
);
const senmlPack = fc.array(fc.dictionary(fc.constantFrom(...LABELS), senmlValue, { maxKeys: 5 }), { minLength: 0, maxLength: 6 });

test("fuzz: SenML packs resolve to records that pass SenmlRecord, or are refused with SenmlError naming a record; JSON and CBOR agree", () => {
  const NOW = 1_700_000_000;
  const run = (pack: unknown, format: "json" | "cbor") => {
    try {
      const records = resolveSenml(pack, { now: NOW, format });
      for (const r of records) assert.ok(v.is(SenmlRecord, r), `resolved record fails SenmlRecord: ${JSON.stringify(r)}`);
      return { ok: records };
    } catch (e) {
      if (!(e instanceof SenmlError)) throw e;
      assert.ok(e.index >= -1 && e.index < (Array.isArray(pack) ? pack.length : 1), `index ${e.index}`);
      assert.match(e.message, /^SenML (record \d+|pack)/);
      return { refused: e.message };
    }
  };
  fc.assert(
    fc.property(senmlPack, (pack) => {
      const json = run(pack, "json");
      // The same pack in CBOR: integer labels, vd as the bytes its base64url names.
      const asCbor = pack.map((r) => new Map(Object.entries(r).map(([k, x]) => [CBOR_LABEL[k]!, k === "vd" && x === "aGkgCg" ? new Uint8Array([0x68, 0x69, 0x20, 0x0a]) : x])));
      const cbor = run(asCbor, "cbor");
      if ("ok" in json && "ok" in cbor) assert.deepEqual(cbor.ok, json.ok);
      // Through ingest, too: the same answer, in both media types, never another error.
      outcome(MEDIA_TYPES.senmlJson, new TextEncoder().encode(JSON.stringify(pack)));
      outcome(MEDIA_TYPES.senmlCbor, encodeCbor(asCbor));
    }),
    BUDGET,
  );
});
