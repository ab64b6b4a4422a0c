import { test } from "node:test";
import assert from "node:assert/strict";
import { CborError, cborDecode, cborEncode, Simple, Tag } from "../../src/codec/cbor_data.ts";
import { decodeBody } from "../../src/ingest/decode.ts";
import { DEFAULT_CBOR_LIMITS, scanCbor } from "../../src/codec/cbor.ts";
import { APPENDIX_A, cbor2Compare, cbor2Encoded } from "../_cbor2.ts";

const bytes = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

test("RFC 8949 Appendix A: every example decodes, passes the ingest bounds, and goes back out as the same data item (cbor2 compares)", async () => {
  const pairs: [string, string][] = [];
  for (const [h, preferred] of APPENDIX_A) {
    scanCbor(bytes(h), false);
    const out = hex(cborEncode(cborDecode(bytes(h))));
    if (preferred) assert.equal(out, h, `re-encoding ${h}`);
    pairs.push([h, out]);
  }
  const verdicts = await cbor2Compare(pairs);
  verdicts.forEach((v, i) => assert.equal(v, "same", `${pairs[i]![0]} → ${pairs[i]![1]}`));
  assert.equal(verdicts.length, 81);
});

test("simple(24) in two bytes (0xf818) is not well-formed under RFC 8949, and is refused by both the bounds and the decoder", () => {
  assert.throws(() => scanCbor(bytes("f818"), false), { name: "CborError", message: "Malformed CBOR at byte 2: invalid simple value 24" });
  assert.throws(() => cborDecode(bytes("f818")), { name: "CborError", message: "Malformed CBOR at byte 1: invalid simple value 24 (0–31 take one byte)" });
});

test("the data model a handler sees: Map for non-text keys, bytes, bigint, Date, Tag, Simple, -0, NaN, half floats", () => {
  assert.deepEqual(cborDecode(bytes("a201020304")), new Map([[1, 2], [3, 4]]));
  assert.deepEqual(cborDecode(bytes("a26161016162820203")), { a: 1, b: [2, 3] });
  assert.deepEqual(cborDecode(bytes("5f42010243030405ff")), new Uint8Array([1, 2, 3, 4, 5]));
  assert.equal(cborDecode(bytes("7f657374726561646d696e67ff")), "streaming");
  assert.equal(cborDecode(bytes("c249010000000000000000")), 2n ** 64n);
  assert.equal(cborDecode(bytes("1bffffffffffffffff")), 2n ** 64n - 1n);
  assert.equal(cborDecode(bytes("1b001fffffffffffff")), Number.MAX_SAFE_INTEGER);
  assert.equal(cborDecode(bytes("3b001ffffffffffffe")), -Number.MAX_SAFE_INTEGER);
  assert.equal(cborDecode(bytes("3b001fffffffffffff")), -(2n ** 53n));
  const d = cborDecode(bytes("c074323031332d30332d32315432303a30343a30305a")) as Date;
  assert.ok(d instanceof Date);
  assert.equal(d.toISOString(), "2013-03-21T20:04:00.000Z");
  assert.deepEqual(cborDecode(bytes("d82076687474703a2f2f7777772e6578616d706c652e636f6d")), new Tag(32, "http://www.example.com"));
  assert.deepEqual(cborDecode(bytes("f0")), new Simple(16));
  assert.ok(Object.is(cborDecode(bytes("f98000")), -0));
  assert.ok(Number.isNaN(cborDecode(bytes("fa7fc00000"))));
  assert.equal(cborDecode(bytes("f93e00")), 1.5);
  assert.equal(cborDecode(bytes("f7")), undefined);
  // Typed arrays by their RFC 8746 little-endian tag; a big-endian one stays a Tag.
  assert.deepEqual(cborDecode(cborEncode(new Float32Array([1.5, -2]))), new Float32Array([1.5, -2]));
  assert.ok(cborDecode(bytes("d8414400010002")) instanceof Tag);
});

test("encoding writes the preferred serialization: shortest heads and the shortest exact float", () => {
  const cases: [unknown, string][] = [
    [1.5, "f93e00"], [-0, "f98000"], [NaN, "f97e00"], [Infinity, "f97c00"], [100000.5, "fa47c35040"], [1.1, "fb3ff199999999999a"],
    [5.960464477539063e-8, "f90001"], [2 ** 53, "fa5a000000"], [1e300, "fb7e37e43c8800759c"], ["x".repeat(30), `781e${"78".repeat(30)}`], [Number.MAX_SAFE_INTEGER, "1b001fffffffffffff"],
    [2n ** 64n, "c249010000000000000000"], [5n, "05"], [-(2n ** 64n) - 1n, "c349010000000000000000"],
    [new Uint8Array([1, 2]), "420102"], [new Map<unknown, unknown>([[1, "a"], ["b", 2]]), "a20161616162" + "02"],
    [new Tag(1234, "x"), "d904d26178"], [new Simple(99), "f863"], [undefined, "f7"], [new Date(1_363_896_240_500), "c1fb41d452d9ec200000"],
    [{ "é": 1 }, "a162c3a901"],
  ];
  for (const [v, h] of cases) assert.equal(hex(cborEncode(v)), h, String(v));
});

test("a decoded Date goes back out as it came in; changed, it becomes tag 1", () => {
  const h = `c07819${hex(new TextEncoder().encode("2013-03-21T02:04:00+06:00"))}`; // 0("2013-03-21T02:04:00+06:00")
  const d = cborDecode(bytes(h)) as Date;
  assert.equal(hex(cborEncode({ d })), `a16164${h}`);
  d.setTime(d.getTime() + 1000);
  assert.equal(hex(cborEncode(d)), "c11a514a1631"); // 1(1363809841)
});

test("a Tag from another copy of the codec (a handler's bundle) is written as a tag", () => {
  const foreign = Object.assign(Object.create({ [Symbol.for("outpost.cbor.tag")]: true }), { tag: 37, value: new Uint8Array(16) });
  assert.equal(hex(cborEncode(foreign)).slice(0, 6), "d82550");
});

test("a map with a duplicate key is refused, not silently narrowed to one value", () => {
  assert.throws(() => cborDecode(bytes("a2616101616102")), { name: "CborError", message: 'Malformed CBOR at byte 4: duplicate map key "a"' });
  assert.throws(() => cborDecode(bytes("a201020103")), { name: "CborError", message: "Malformed CBOR at byte 3: duplicate map key 1" });
  assert.throws(() => decodeBody("application/cbor", bytes("a2616101616102"), DEFAULT_CBOR_LIMITS), {
    name: "MalformedBodyError",
    message: 'Malformed CBOR in reading 0: Malformed CBOR at byte 4: duplicate map key "a"',
  });
});

test("what cbor2 encodes (dates, decimals, fractions, UUIDs, bignums, simple values, int keys, sets) survives our decode and encode", async () => {
  const items = await cbor2Encoded();
  assert.ok(items.length > 40);
  const pairs = items.map(([, h]) => [h, hex(cborEncode(cborDecode(bytes(h))))] as [string, string]);
  const verdicts = await cbor2Compare(pairs);
  verdicts.forEach((v, i) => assert.equal(v, "same", `${items[i]![0]}: ${pairs[i]![0]} → ${pairs[i]![1]}`));
});

test("encoding refuses a cycle with a clear error", () => {
  const a: unknown[] = [];
  a.push(a);
  assert.throws(() => cborEncode(a), (e: unknown) => e instanceof CborError && /nested deeper than 128 \(a cycle\?\)/.test(e.message));
});
