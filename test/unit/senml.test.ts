/** SenML (RFC 8428): the RFC's own examples resolved exactly, the errors a sensor developer sees, the schema. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { transformSync } from "esbuild";
import variant from "@jitl/quickjs-wasmfile-release-sync";
import { newQuickJSWASMModuleFromVariant, type QuickJSSyncVariant } from "quickjs-emscripten-core";
import * as v from "valibot";
import { resolveSenml, SenmlError, type SenmlResolved } from "../../src/codec/senml.ts";
import { SenmlRecord } from "../../src/sdk/senml.ts";

const NOW = 1_700_000_000;
const json = (pack: unknown) => resolveSenml(pack, { now: NOW, format: "json" });
const cbor = (pack: unknown) => resolveSenml(pack, { now: NOW, format: "cbor" });
/** Every resolved record must also pass the SDK schema. */
const checked = (rs: SenmlResolved[]) => (rs.forEach((r) => v.parse(SenmlRecord, r)), rs);
const fails = (pack: unknown, message: string, index: number, label: string | undefined, format: "json" | "cbor" = "json") =>
  assert.throws(() => resolveSenml(pack, { now: NOW, format }), (e: unknown) => {
    assert.ok(e instanceof SenmlError);
    assert.deepEqual({ name: e.name, message: e.message, index: e.index, label: e.label }, { name: "SenmlError", message, index, label });
    return true;
  });

const DEV = "urn:dev:ow:10e2073a01080063";

test("RFC 8428 §5.1.1 single data point: a record with no time is taken now", () => {
  assert.deepEqual(checked(json([{ n: DEV, u: "Cel", v: 23.1 }])), [{ n: DEV, t: NOW, u: "Cel", v: 23.1 }]);
});

test("RFC 8428 §5.1.2 multiple data points: base name concatenated, units per record", () => {
  const pack = [{ bn: `${DEV}:`, n: "voltage", u: "V", v: 120.1 }, { n: "current", u: "A", v: 1.2 }];
  assert.deepEqual(checked(json(pack)), [
    { n: `${DEV}:voltage`, t: NOW, u: "V", v: 120.1 },
    { n: `${DEV}:current`, t: NOW, u: "A", v: 1.2 },
  ]);
});

// §5.1.2's second example; §6 gives the same pack in CBOR.
const BT = 1.276020076001e9;
const DEV6 = "urn:dev:ow:10e2073a0108006:";
const EX2 = [
  { bn: DEV6, bt: BT, bu: "A", bver: 5, n: "voltage", u: "V", v: 120.1 },
  { n: "current", t: -5, v: 1.2 },
  { n: "current", t: -4, v: 1.3 },
  { n: "current", t: -3, v: 1.4 },
  { n: "current", t: -2, v: 1.5 },
  { n: "current", t: -1, v: 1.6 },
  { n: "current", v: 1.7 },
];
// Resolved records are in chronological order (§4.6): the five earlier currents move before the
// voltage; the last current shares its time and keeps its place after it. Version 5 is not 10,
// so every resolved record carries it (§4.6).
const EX2_RESOLVED = [
  { n: `${DEV6}current`, t: BT - 5, u: "A", v: 1.2, bver: 5 },
  { n: `${DEV6}current`, t: BT - 4, u: "A", v: 1.3, bver: 5 },
  { n: `${DEV6}current`, t: BT - 3, u: "A", v: 1.4, bver: 5 },
  { n: `${DEV6}current`, t: BT - 2, u: "A", v: 1.5, bver: 5 },
  { n: `${DEV6}current`, t: BT - 1, u: "A", v: 1.6, bver: 5 },
  { n: `${DEV6}voltage`, t: BT, u: "V", v: 120.1, bver: 5 },
  { n: `${DEV6}current`, t: BT, u: "A", v: 1.7, bver: 5 },
];

test("RFC 8428 §5.1.2 base time, base unit and version, times relative to the base time", () => {
  assert.deepEqual(checked(json(EX2)), EX2_RESOLVED);
  assert.equal(EX2_RESOLVED[0]!.t, 1276020071.001);
});

test("RFC 8428 §6 the same pack in CBOR: integer labels resolve identically", () => {
  // [{-2: "urn:dev:ow:10e2073a0108006:", -3: 1276020076.001, -4: "A", -1: 5, 0: "voltage", 1: "V", 2: 120.1},
  //  {0: "current", 6: -5, 2: 1.2}, … {0: "current", 6: 0, 2: 1.7}]
  const pack = [
    new Map<number, unknown>([[-2, DEV6], [-3, BT], [-4, "A"], [-1, 5], [0, "voltage"], [1, "V"], [2, 120.1]]),
    ...[[-5, 1.2], [-4, 1.3], [-3, 1.4], [-2, 1.5], [-1, 1.6], [0, 1.7]].map(([t, val]) => new Map<number, unknown>([[0, "current"], [6, t], [2, val]])),
  ];
  assert.deepEqual(checked(cbor(pack)), EX2_RESOLVED);
});

test("RFC 8428 §5.1.2 SensML stream: the base name alone names every record", () => {
  const bt = 1.320067464e9;
  const values = [21.3, 21.4, 21.4, 21.5, 21.5, 21.5, 21.6, 21.7];
  const pack = [{ bn: DEV, bt, bu: "%RH", v: 21.2 }, ...values.map((val, i) => ({ t: 10 * (i + 1), v: val }))];
  assert.deepEqual(checked(json(pack)), [
    { n: DEV, t: bt, u: "%RH", v: 21.2 },
    ...values.map((val, i) => ({ n: DEV, t: bt + 10 * (i + 1), u: "%RH", v: val })),
  ]);
});

test("RFC 8428 §5.1.3 multiple measurements resolve to exactly §5.1.4 resolved data", () => {
  const pack = [
    { bn: DEV, bt: 1.320067464e9, bu: "%RH", v: 20 },
    { u: "lon", v: 24.30621 },
    { u: "lat", v: 60.07965 },
    { t: 60, v: 20.3 },
    { u: "lon", t: 60, v: 24.30622 },
    { u: "lat", t: 60, v: 60.07965 },
    { t: 120, v: 20.7 },
    { u: "lon", t: 120, v: 24.30623 },
    { u: "lat", t: 120, v: 60.07966 },
    { u: "%EL", t: 150, v: 98 },
    { t: 180, v: 21.2 },
    { u: "lon", t: 180, v: 24.30628 },
    { u: "lat", t: 180, v: 60.07967 },
  ];
  // §5.1.4, verbatim (member order aside)
  const resolved = [
    { n: DEV, u: "%RH", t: 1.320067464e9, v: 20 },
    { n: DEV, u: "lon", t: 1.320067464e9, v: 24.30621 },
    { n: DEV, u: "lat", t: 1.320067464e9, v: 60.07965 },
    { n: DEV, u: "%RH", t: 1.320067524e9, v: 20.3 },
    { n: DEV, u: "lon", t: 1.320067524e9, v: 24.30622 },
    { n: DEV, u: "lat", t: 1.320067524e9, v: 60.07965 },
    { n: DEV, u: "%RH", t: 1.320067584e9, v: 20.7 },
    { n: DEV, u: "lon", t: 1.320067584e9, v: 24.30623 },
    { n: DEV, u: "lat", t: 1.320067584e9, v: 60.07966 },
    { n: DEV, u: "%EL", t: 1.320067614e9, v: 98 },
    { n: DEV, u: "%RH", t: 1.320067644e9, v: 21.2 },
    { n: DEV, u: "lon", t: 1.320067644e9, v: 24.30628 },
    { n: DEV, u: "lat", t: 1.320067644e9, v: 60.07967 },
  ];
  assert.deepEqual(checked(json(pack)), resolved);
});

const EX5 = [
  { bn: `${DEV}:`, n: "temp", u: "Cel", v: 23.1 },
  { n: "label", vs: "Machine Room" },
  { n: "open", vb: false },
  { n: "nfv-reader", vd: "aGkgCg" },
];
const EX5_RESOLVED = [
  { n: `${DEV}:temp`, t: NOW, u: "Cel", v: 23.1 },
  { n: `${DEV}:label`, t: NOW, vs: "Machine Room" },
  { n: `${DEV}:open`, t: NOW, vb: false },
  { n: `${DEV}:nfv-reader`, t: NOW, vd: new Uint8Array([0x68, 0x69, 0x20, 0x0a]) }, // "hi \n"
];

test("RFC 8428 §5.1.5 multiple data types: string, boolean and base64url data values", () => {
  assert.deepEqual(checked(json(EX5)), EX5_RESOLVED);
});

test("RFC 8428 §5.1.6 collection of resources: a new base name, the first record's base time", () => {
  const bt = 1.320078429e9;
  const pack = [
    { bn: "2001:db8::2/", bt, n: "temperature", u: "Cel", v: 25.2 },
    { n: "humidity", u: "%RH", v: 30 },
    { bn: "2001:db8::1/", n: "temperature", u: "Cel", v: 12.3 },
    { n: "humidity", u: "%RH", v: 67 },
  ];
  assert.deepEqual(checked(json(pack)), [
    { n: "2001:db8::2/temperature", t: bt, u: "Cel", v: 25.2 },
    { n: "2001:db8::2/humidity", t: bt, u: "%RH", v: 30 },
    { n: "2001:db8::1/temperature", t: bt, u: "Cel", v: 12.3 },
    { n: "2001:db8::1/humidity", t: bt, u: "%RH", v: 67 },
  ]);
});

test("RFC 8428 §5.1.7 setting an actuator: a record of base fields only sets them and yields none", () => {
  const pack = [{ bn: `${DEV}:` }, { n: "temp", u: "Cel", v: 23.1 }, { n: "heat", u: "/", v: 1 }, { n: "fan", u: "/", v: 0 }];
  assert.deepEqual(checked(json(pack)), [
    { n: `${DEV}:temp`, t: NOW, u: "Cel", v: 23.1 },
    { n: `${DEV}:heat`, t: NOW, u: "/", v: 1 },
    { n: `${DEV}:fan`, t: NOW, u: "/", v: 0 },
  ]);
});

test("RFC 8428 §5.1.7 lights switched at a base time and 100 ms after it", () => {
  const bt = 1.320078429e9;
  assert.deepEqual(checked(json([{ bt, bu: "/", n: "2001:db8::3", v: 1 }, { n: "2001:db8::4", v: 1 }])), [
    { n: "2001:db8::3", t: bt, u: "/", v: 1 },
    { n: "2001:db8::4", t: bt, u: "/", v: 1 },
  ]);
  const pack = [
    { bt, bu: "/", n: "2001:db8::3", v: 0.5 },
    { n: "2001:db8::4", v: 0.5 },
    { n: "2001:db8::3", t: 0.1, v: 0 },
    { n: "2001:db8::4", t: 0.1, v: 0 },
  ];
  assert.deepEqual(checked(json(pack)), [
    { n: "2001:db8::3", t: bt, u: "/", v: 0.5 },
    { n: "2001:db8::4", t: bt, u: "/", v: 0.5 },
    { n: "2001:db8::3", t: bt + 0.1, u: "/", v: 0 },
    { n: "2001:db8::4", t: bt + 0.1, u: "/", v: 0 },
  ]);
});

test("base value adds to v only; base sum adds to every record's sum; a record may carry only a sum", () => {
  const pack = [
    { bn: "meter1:", bv: 100, bs: 5000, bu: "W", n: "power", v: 1.5, s: 20 },
    { n: "power", v: -2 },
    { n: "state", vs: "on", u: "/" },
    { n: "energy", s: 7 },
  ];
  assert.deepEqual(checked(json(pack)), [
    { n: "meter1:power", t: NOW, u: "W", v: 101.5, s: 5020 },
    { n: "meter1:power", t: NOW, u: "W", v: 98, s: 5000 },
    { n: "meter1:state", t: NOW, u: "/", vs: "on", s: 5000 },
    { n: "meter1:energy", t: NOW, u: "W", s: 5007 },
  ]);
});

test("relative times count from now: a relative base time plus the record's time", () => {
  const pack = [{ bn: "dev:", bt: -10, n: "a", v: 1 }, { n: "b", t: 4, v: 2, ut: 60 }, { bt: 0, n: "c", t: 2 ** 28, v: 3 }];
  assert.deepEqual(checked(json(pack)), [
    { n: "dev:c", t: 2 ** 28, v: 3 },
    { n: "dev:a", t: NOW - 10, v: 1 },
    { n: "dev:b", t: NOW - 6, v: 2, ut: 60 },
  ]);
});

test("unknown labels are ignored and not copied; unknown integer labels in CBOR too", () => {
  assert.deepEqual(json([{ n: "x", v: 1, foo: "bar", bfoo: 2 }]), [{ n: "x", t: NOW, v: 1 }]);
  const rec = new Map<unknown, unknown>([[0, "x"], [2, 1], [9, "future"], [-7, 1], ["ext", true], [1.5, 0]]);
  assert.deepEqual(cbor([rec]), [{ n: "x", t: NOW, v: 1 }]);
});

test("CBOR: byte strings, bigints, decimal fractions (tag 4) and plain objects for text-keyed maps", () => {
  const decfrac = Object.defineProperty({ tag: 4, value: [-3, 1276020076001n] }, Symbol.for("outpost.cbor.tag"), { value: true });
  const pack = [
    new Map<unknown, unknown>([[-2, "dev:"], [-3, decfrac], [0, "raw"], [8, new Uint8Array([1, 2])]]),
    new Map<unknown, unknown>([[0n, "count"], [6n, -1n], [2n, 42n]]),
    { n: "plain", vs: "text keys" },
  ];
  assert.deepEqual(checked(cbor(pack)), [
    { n: "dev:count", t: BT - 1, v: 42 },
    { n: "dev:raw", t: BT, vd: new Uint8Array([1, 2]) },
    { n: "dev:plain", t: BT, vs: "text keys" },
  ]);
});

test("the resolver runs inside QuickJS (no Node or DOM APIs) and gives the same records", async () => {
  const src = readFileSync(new URL("../../src/codec/senml.ts", import.meta.url), "utf8");
  const { code } = transformSync(src, { loader: "ts", format: "iife", globalName: "senml", target: "es2020" });
  const base = ((variant as unknown as { default?: QuickJSSyncVariant }).default ?? variant) as unknown as QuickJSSyncVariant;
  const vm = (await newQuickJSWASMModuleFromVariant(base)).newContext();
  try {
    const out = vm.unwrapResult(
      vm.evalCode(`${code}
        const r = senml.resolveSenml(${JSON.stringify(EX5)}, { now: ${NOW}, format: "json" });
        let err; try { senml.resolveSenml([{ n: "x", v: 1, vs: "y" }], { now: ${NOW}, format: "json" }); } catch (e) { err = [e.name, e.message, e.index, e.label]; }
        JSON.stringify({ r: r.map((x) => x.vd ? { ...x, vd: Array.from(x.vd) } : x), err });`),
    );
    const got = JSON.parse(vm.getString(out)) as { r: unknown; err: unknown };
    out.dispose();
    assert.deepEqual(got.r, EX5_RESOLVED.map((x) => ("vd" in x ? { ...x, vd: Array.from(x.vd) } : x)));
    assert.deepEqual(got.err, ["SenmlError", 'SenML record 0: label "vs" together with "v": a record holds one value', 0, "vs"]);
  } finally {
    vm.dispose();
  }
});

test("a pack that is not an array of records, or is empty, is refused", () => {
  fails({ n: "x", v: 1 }, "SenML pack: expected an array of records, got an object", -1, undefined);
  fails([], "SenML pack: empty; a pack holds at least one record", -1, undefined);
  fails([{ n: "x", v: 1 }, "x"], "SenML record 1: not a map (got a string)", 1, undefined);
  fails([[1, 2]], "SenML record 0: not a map (got an array)", 0, undefined, "cbor");
});

test("a record holds exactly one value, or a sum", () => {
  fails([{ n: "a", v: 1 }, { n: "b", v: 2 }, { n: "c", v: 3, vs: "x" }], 'SenML record 2: label "vs" together with "v": a record holds one value', 2, "vs");
  fails([{ n: "a", vb: true, vd: "AA" }], 'SenML record 0: label "vd" together with "vb": a record holds one value', 0, "vd");
  fails([{ n: "a", v: 1 }, { n: "b", u: "Cel" }], 'SenML record 1: a record holds no value ("v", "vs", "vb" or "vd") and no sum ("s")', 1, "v");
  fails([{}], 'SenML record 0: a record holds no value ("v", "vs", "vb" or "vd") and no sum ("s")', 0, "v");
  fails([{ bn: "a", t: 5 }], 'SenML record 0: a record holds no value ("v", "vs", "vb" or "vd") and no sum ("s")', 0, "v");
});

test("names: one is required, and the concatenation keeps to RFC 8428 §4.5.1", () => {
  fails([{ v: 1 }], 'SenML record 0: no name (neither "bn" nor "n")', 0, "n");
  const rule = "is not a SenML name: it starts with a letter or digit, then only letters, digits and - : . / _";
  fails([{ n: "ok", v: 1 }, { n: "-temp", v: 1 }], `SenML record 1: name "-temp" ${rule}`, 1, "n");
  fails([{ bn: "dev 1", v: 1 }], `SenML record 0: name "dev 1" ${rule}`, 0, "bn");
  fails([{ bn: "dev:", n: "t#1", v: 1 }], `SenML record 0: name "dev:t#1" ${rule}`, 0, "n");
  fails([{ bn: "", n: "", v: 1 }], `SenML record 0: name "" ${rule}`, 0, "n");
});

test("labels ending in _ must be understood; a label given twice is refused", () => {
  fails([{ n: "a", v: 1 }, { n: "b", v: 1, foo_: 1 }], 'SenML record 1: unknown label "foo_" (labels ending in _ must be understood)', 1, "foo_");
  fails([new Map<unknown, unknown>([[0, "a"], ["n", "b"], [2, 1]])], 'SenML record 0: label "n" appears twice', 0, "n", "cbor");
});

test("versions: newer than 10 refused, one version per pack", () => {
  const ok = { n: "a", v: 1 };
  fails([ok, ok, ok, { ...ok, bver: 11 }], 'SenML record 3: "bver" 11 is newer than version 10, the one understood', 3, "bver");
  fails([ok, { ...ok, bver: 5 }], 'SenML record 1: "bver" 5 differs from version 10 of the records before: a pack has one version', 1, "bver");
  fails([{ ...ok, bver: 1.5 }], 'SenML record 0: "bver" must be a positive integer, got 1.5', 0, "bver");
  assert.deepEqual(json([{ ...ok, bver: 10 }, { ...ok, bver: 10 }]), [{ n: "a", t: NOW, v: 1 }, { n: "a", t: NOW, v: 1 }]);
});

test("wrong value types are refused, naming the label", () => {
  fails([{ n: "a", v: "21.5" }], 'SenML record 0: "v" must be a finite number, got a string', 0, "v");
  fails([{ n: 5, v: 1 }], 'SenML record 0: "n" must be a string, got 5', 0, "n");
  fails([{ n: "a", vb: "true" }], 'SenML record 0: "vb" must be a boolean, got a string', 0, "vb");
  fails([{ n: "a", v: 1, t: null }], 'SenML record 0: "t" must be a finite number, got null', 0, "t");
  fails([{ bu: ["A"], n: "a", v: 1 }], 'SenML record 0: "bu" must be a string, got an array', 0, "bu");
  fails([{ n: "a", vd: new Uint8Array([1]) }], 'SenML record 0: "vd" must be base64url text, got a byte string', 0, "vd");
  fails([new Map<number, unknown>([[0, "a"], [8, "AQ"]])], 'SenML record 0: "vd" must be a byte string, got a string', 0, "vd", "cbor");
  fails([{ n: "a", vd: "aGkgCg==" }], 'SenML record 0: "vd" is not base64url without padding (RFC 4648 §5): "=" at offset 6', 0, "vd");
  fails([{ n: "a", vd: "ab+d" }], 'SenML record 0: "vd" is not base64url without padding (RFC 4648 §5): "+" at offset 2', 0, "vd");
  fails([{ n: "a", vd: "abcde" }], 'SenML record 0: "vd" is not base64url: 5 characters cannot encode whole bytes', 0, "vd");
});

test("numbers must be finite, before and after adding the base", () => {
  fails([new Map<number, unknown>([[0, "a"], [2, NaN]])], 'SenML record 0: "v" must be a finite number, got NaN', 0, "v", "cbor");
  fails([new Map<number, unknown>([[0, "a"], [2, 1], [6, -Infinity]])], 'SenML record 0: "t" must be a finite number, got -Infinity', 0, "t", "cbor");
  fails([new Map<unknown, unknown>([[0, "a"], [2, 10n ** 400n]])], 'SenML record 0: "v" must be a finite number, got Infinity', 0, "v", "cbor");
  fails([{ bt: 1e308, n: "a", t: 1e308, v: 1 }], 'SenML record 0: "bt" + "t" is not a finite number', 0, "t");
  fails([{ bv: -1e308, n: "a", v: -1e308 }], 'SenML record 0: "bv" + "v" is not a finite number', 0, "v");
  fails([{ n: "a", v: 1, t: -2e9 }], 'SenML record 0: time -2000000000 s from now falls before 2**28 s (1978-07-04), so it cannot be made absolute', 0, "t");
});

test("resolveSenml refuses a bad now or format as misuse", () => {
  assert.throws(() => resolveSenml([{ n: "a", v: 1 }], { now: 0, format: "json" }), RangeError);
  assert.throws(() => resolveSenml([{ n: "a", v: 1 }], { now: NOW, format: "xml" as "json" }), TypeError);
});

test("SenmlRecord accepts exactly one value kind (or a sum alone) and only resolved fields", () => {
  const base = { n: "dev:a", t: NOW };
  for (const ok of [{ ...base, v: 1, u: "Cel", s: 2, ut: 5 }, { ...base, vs: "x" }, { ...base, vb: true }, { ...base, vd: new Uint8Array(1) }, { ...base, s: 3 }, { ...base, v: 1, bver: 5 }]) {
    assert.ok(v.safeParse(SenmlRecord, ok).success, JSON.stringify(ok));
  }
  const two = v.safeParse(SenmlRecord, { ...base, v: 1, vs: "x" });
  assert.equal(two.success, false);
  assert.equal(two.issues?.[0]?.message, 'A SenML record holds one value: one of "v", "vs", "vb" or "vd"');
  for (const bad of [
    { ...base },
    { ...base, t: 5, v: 1 },
    { ...base, n: "", v: 1 },
    { ...base, n: "a b", v: 1 },
    { ...base, v: "1" },
    { ...base, v: 1, u: undefined },
    { ...base, v: 1, bn: "x" },
    { ...base, v: 1, bver: 10 },
    { ...base, vd: "AQ" },
    { ...base, v: Infinity },
  ]) {
    assert.equal(v.safeParse(SenmlRecord, bad).success, false, JSON.stringify(bad));
  }
});
