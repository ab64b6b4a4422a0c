import { test } from "node:test";
import assert from "node:assert/strict";
import { CborError, decodeCbor, encodeCbor, scanCbor } from "../../src/codec/cbor.ts";
import { Tag } from "../../src/codec/cbor_data.ts";
import { decodeBody, MalformedBodyError } from "../../src/ingest/decode.ts";
import { DEFAULT_CBOR_LIMITS } from "../../src/codec/cbor.ts";

const te = new TextEncoder();
const str = (s: string) => [0x60 + s.length, ...te.encode(s)];

test("cbor round-trips bytes, big integers and dates exactly", () => {
  const v = { b: new Uint8Array([0, 1, 255]), n: 2n ** 70n, d: new Date(1_700_000_000_000), f: 1.5, s: "x" };
  const back = decodeCbor(encodeCbor(v)) as typeof v;
  assert.deepEqual(back.b, v.b);
  assert.equal(back.n, v.n);
  assert.equal(back.d.getTime(), v.d.getTime());
  assert.equal(back.f, 1.5);
});

test("encodeCbor returns memory of its own, not a view of the encoder's reused buffer", () => {
  const a = encodeCbor({ a: 1 });
  const copy = a.slice();
  encodeCbor({ zzzzzzzz: "overwrite" });
  assert.deepEqual(a, copy);
  assert.equal(a.byteOffset, 0);
  assert.equal(a.buffer.byteLength, a.byteLength);
});

test("scanCbor splits a CBOR sequence into its items", () => {
  assert.deepEqual(scanCbor(new Uint8Array([0x01, 0x02, 0x9f, 0x01, 0xff]), true), [[0, 1], [1, 2], [2, 5]]);
});

test("scanCbor refuses a length header larger than the input without allocating", () => {
  // array of 100 663 296 items in a 5-byte body
  assert.throws(() => scanCbor(new Uint8Array([0x9a, 0x06, 0, 0, 0]), false), {
    name: "CborError",
    message: "Malformed CBOR at byte 5: array of 100663296 items cannot fit in the 0 bytes left",
  });
  assert.throws(() => scanCbor(new Uint8Array([0x5a, 0xff, 0xff, 0xff, 0xff]), false), /string length 4294967295 exceeds the 0 bytes left/);
  assert.throws(() => scanCbor(new Uint8Array([0xbb, 0, 0, 0, 1, 0, 0, 0, 0]), false), /map of 4294967296 pairs cannot fit/);
});

test("scanCbor bounds nesting depth and item count", () => {
  assert.throws(() => scanCbor(new Uint8Array(100).fill(0x81), false), /nesting deeper than 32/);
  const many = new Uint8Array([0x9f, ...new Array(200).fill(0x01), 0xff]);
  assert.throws(() => scanCbor(many, false, { maxDepth: 32, maxItems: 100 }), /more than 100 data items/);
});

test("scanCbor refuses truncated input, stray breaks and reserved values; any tag is kept", () => {
  assert.throws(() => scanCbor(new Uint8Array([0xa1, 0x61]), false), CborError);
  assert.throws(() => scanCbor(new Uint8Array([0xff]), false), /unexpected break/);
  assert.throws(() => scanCbor(new Uint8Array([0x1c]), false), /reserved additional information 28/);
  // Tags without a type of their own (cbor-x's record tag 57344 among them) are data, not code.
  assert.deepEqual(decodeCbor(new Uint8Array([0xd8, 28, 0x01])), new Tag(28, 1));
  assert.deepEqual(decodeCbor(new Uint8Array([0xd9, 0xe0, 0x00, 0x80])), new Tag(57344, []));
  assert.throws(() => scanCbor(new Uint8Array([0x9f, 0x01]), false), /missing break/);
  assert.throws(() => scanCbor(new Uint8Array([0x01, 0x02]), false), /1 trailing bytes after the item/);
  assert.throws(() => scanCbor(new Uint8Array([]), false), /empty body/);
});

test("a hostile 40 KB payload is refused quickly and the process survives", () => {
  const hostile = [
    new Uint8Array(40_000).fill(0x9f), // 40k nested indefinite arrays
    new Uint8Array(40_000).fill(0x81),
    Uint8Array.from({ length: 40_000 }, (_, i) => (i % 2 ? 0x9a : 0x7f)),
    new Uint8Array([0x9f, ...new Array(39_998).fill(0xf6), 0xff]), // fine shape, but 40k items in one reading
  ];
  for (const h of hostile) {
    const t0 = performance.now();
    assert.throws(() => decodeBody("application/cbor", h, { ...DEFAULT_CBOR_LIMITS, maxItems: 10_000 }), MalformedBodyError);
    assert.ok(performance.now() - t0 < 1_000);
  }
});

test("a __proto__ key is refused in CBOR and JSON alike, and pollutes nothing", () => {
  const body = new Uint8Array([0xa1, ...str("__proto__"), 0xa1, ...str("polluted"), 0x01]);
  assert.throws(() => decodeBody("application/cbor", body, DEFAULT_CBOR_LIMITS), {
    name: "MalformedBodyError",
    message: 'Malformed CBOR at byte 1: the map key "__proto__" is not accepted',
  });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.throws(() => decodeBody("application/json", te.encode('{"a":{"__proto__":{"polluted":1}}}'), DEFAULT_CBOR_LIMITS), {
    name: "MalformedBodyError",
    message: 'Malformed JSON in reading 0: the key "__proto__" is not accepted',
  });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  // Other keys that merely contain the word are fine.
  assert.deepEqual(decodeBody("application/json", te.encode('{"__proto__x":1}'), DEFAULT_CBOR_LIMITS).readings, [{ __proto__x: 1 }]);
});

test("decodeBody keeps each CBOR reading's own bytes and reads JSON objects and arrays", () => {
  const a = encodeCbor({ s: "a" });
  const b = encodeCbor({ s: "b" });
  const seq = new Uint8Array([...a, ...b]);
  const d = decodeBody("application/cbor-seq", seq, DEFAULT_CBOR_LIMITS);
  assert.deepEqual(d.readings, [{ s: "a" }, { s: "b" }]);
  assert.deepEqual(d.raw?.map((x) => [...x]), [[...a], [...b]]);
  assert.deepEqual(decodeBody("application/json", te.encode('[{"a":1},{"a":2}]'), DEFAULT_CBOR_LIMITS).readings, [{ a: 1 }, { a: 2 }]);
  assert.throws(() => decodeBody("application/json", te.encode("42"), DEFAULT_CBOR_LIMITS), /must be a reading \(an object\) or an array/);
  assert.throws(() => decodeBody("application/json", te.encode("{"), DEFAULT_CBOR_LIMITS), /^MalformedBodyError: Malformed JSON/);
});

test("CBOR and JSON share one depth bound: 32 levels below the reading pass, 33 are refused", () => {
  const nest = (d: number): unknown => (d === 0 ? 1 : [nest(d - 1)]);
  for (const [depth, ok] of [[32, true], [33, false]] as const) {
    const r = { x: nest(depth - 1) }; // the reading itself is level 0, x level 1
    const json = () => decodeBody("application/json", te.encode(JSON.stringify(r)), DEFAULT_CBOR_LIMITS);
    const cbor = () => decodeBody("application/cbor", encodeCbor(r), DEFAULT_CBOR_LIMITS);
    if (ok) {
      assert.deepEqual(json().readings, [r]);
      assert.deepEqual(cbor().readings, [r]);
    } else {
      assert.throws(json, { name: "MalformedBodyError", message: "Malformed JSON in reading 0: nesting deeper than 32" });
      assert.throws(cbor, { name: "MalformedBodyError", message: /^Malformed CBOR at byte \d+: nesting deeper than 32$/ });
    }
  }
});

test("bignums: 64 bytes round-trip, longer or indefinite ones are refused before a BigInt is built", () => {
  const big = 2n ** 511n;
  assert.equal((decodeBody("application/cbor", encodeCbor({ n: big }), DEFAULT_CBOR_LIMITS).readings[0] as { n: bigint }).n, big);
  const long = new Uint8Array([0xc2, 0x58, 65, ...new Uint8Array(65).fill(1)]);
  assert.throws(() => scanCbor(long, false), { name: "CborError", message: "Malformed CBOR at byte 1: bignum of 65 bytes; at most 64 bytes are accepted" });
  assert.throws(() => scanCbor(new Uint8Array([0xc2, 0x5f, 0x41, 0x01, 0xff]), false), /a bignum \(tag 2 or 3\) must hold a definite byte string/);
  assert.throws(() => scanCbor(new Uint8Array([0xc3, 0x01]), false), /a bignum \(tag 2 or 3\) must hold a definite byte string/);
});
