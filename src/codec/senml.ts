/**
 * SenML (RFC 8428) packs turned into resolved records (§4.6): base fields applied, names
 * concatenated, times absolute, records in chronological order. Takes a pack already decoded from
 * JSON or CBOR. Pure: no imports, nothing beyond what QuickJS has, so the sandbox runs it too.
 * @module
 */

/** One resolved SenML record: no base fields, an absolute time; only the fields present are set. */
export interface SenmlResolved {
  /** Name: Base Name + Name. */
  n: string;
  /** Time in seconds since the Unix epoch, relative times resolved against `now`. */
  t: number;
  u?: string;
  v?: number;
  vs?: string;
  vb?: boolean;
  vd?: Uint8Array;
  /** Sum: Base Sum + Sum. */
  s?: number;
  ut?: number;
  /** The pack's version, only when it is not 10 (RFC 8428 §4.6: then every resolved record carries it). */
  bver?: number;
}

/** How to read a pack: when "now" is, and which representation it was decoded from. */
export interface SenmlOptions {
  /** The current time in seconds since the Unix epoch: relative times (below 2**28) count from it. */
  now: number;
  /** `"json"`: `vd` is base64url text. `"cbor"`: `vd` is a byte string, labels may be integers (§6). */
  format: "json" | "cbor";
}

/** Raised for a pack that is not valid SenML; `index` is the record (0-based, -1 for the pack). */
export class SenmlError extends Error {
  override name = "SenmlError";
  /** The record at fault, counted from 0; -1 when the pack itself is. */
  index: number;
  /** The label at fault, when one is. */
  label: string | undefined;
  constructor(message: string, index: number, label: string | undefined) {
    super(message);
    this.index = index;
    this.label = label;
  }
}

type _Label = "bn" | "bt" | "bu" | "bv" | "bs" | "bver" | "n" | "u" | "v" | "vs" | "vb" | "vd" | "s" | "t" | "ut";
type _Fields = Partial<Record<_Label, unknown>>;

// RFC 8428 §6 Table 4: integer labels -1 … -6 and 0 … 8, indexed by label + 6.
const _CBOR: readonly _Label[] = ["bs", "bv", "bu", "bt", "bn", "bver", "n", "u", "v", "vs", "vb", "s", "t", "ut", "vd"];
const _KNOWN: readonly string[] = _CBOR;
const _REGULAR: readonly _Label[] = ["n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"];
const _VALUES = ["v", "vs", "vb", "vd"] as const;
const _NAME = /^[A-Za-z0-9][-:./_A-Za-z0-9]*$/;
const _ABSOLUTE = 2 ** 28;
const _CBOR_TAG = Symbol.for("outpost.cbor.tag");

/**
 * Resolve a decoded SenML pack (RFC 8428 §4.6).
 * @param pack the decoded array of records: plain objects, or for CBOR `Map`s with integer labels
 * @param opts `now` in epoch seconds, and the representation the pack came in
 * @returns the resolved records in chronological order (records of base fields only yield none)
 * @throws SenmlError naming the record and label at fault
 * @throws RangeError / TypeError for bad `opts`
 * @example
 * ```ts
 * resolveSenml([{ bn: "dev1:", bt: 1.7e9, n: "temp", u: "Cel", v: 21.5 }], { now: 1.7e9, format: "json" });
 * // [{ n: "dev1:temp", t: 1700000000, u: "Cel", v: 21.5 }]
 * ```
 */
export function resolveSenml(pack: unknown, opts: SenmlOptions): SenmlResolved[] {
  const { now, format } = opts;
  if (typeof now !== "number" || !Number.isFinite(now) || now < _ABSOLUTE) throw new RangeError(`resolveSenml: now must be epoch seconds (at least 2**28), got ${now}`);
  if (format !== "json" && format !== "cbor") throw new TypeError(`resolveSenml: format must be "json" or "cbor", got ${String(format)}`);
  if (!Array.isArray(pack)) throw new SenmlError(`SenML pack: expected an array of records, got ${_kind(pack)}`, -1, undefined);
  if (pack.length === 0) throw new SenmlError("SenML pack: empty; a pack holds at least one record", -1, undefined);
  let bn: string | undefined, bu: string | undefined, bs: number | undefined;
  let bt = 0, bv = 0, bver = 10;
  const out: SenmlResolved[] = [];
  for (let i = 0; i < pack.length; i++) {
    const f = _fields(pack[i], i);
    const fail = (label: _Label | undefined, msg: string): never => {
      throw new SenmlError(`SenML record ${i}: ${msg}`, i, label);
    };
    const str = (l: _Label): string | undefined => {
      const x = f[l];
      return x === undefined || typeof x === "string" ? x : fail(l, `"${l}" must be a string, got ${_kind(x)}`);
    };
    const num = (l: _Label) => (f[l] === undefined ? undefined : _number(f[l], format, (why) => fail(l, `"${l}" must be a finite number, got ${why}`)));
    const sum = (a: number, b: number, la: _Label, lb: _Label) => (Number.isFinite(a + b) ? a + b : fail(lb, `"${la}" + "${lb}" is not a finite number`));
    if (f.bver !== undefined) {
      const ver = num("bver")!;
      if (!Number.isInteger(ver) || ver < 1) fail("bver", `"bver" must be a positive integer, got ${ver}`);
      if (ver > 10) fail("bver", `"bver" ${ver} is newer than version 10, the one understood`);
      if (ver !== bver && i > 0) fail("bver", `"bver" ${ver} differs from version ${bver} of the records before: a pack has one version`);
      bver = ver;
    }
    if (f.bn !== undefined) bn = str("bn");
    if (f.bu !== undefined) bu = str("bu");
    if (f.bt !== undefined) bt = num("bt")!;
    if (f.bv !== undefined) bv = num("bv")!;
    if (f.bs !== undefined) bs = num("bs");
    const n = str("n"), u = str("u"), vs = str("vs");
    const t = num("t"), s = num("s"), ut = num("ut"), v = num("v");
    if (f.vb !== undefined && typeof f.vb !== "boolean") fail("vb", `"vb" must be a boolean, got ${_kind(f.vb)}`);
    const vd = f.vd === undefined ? undefined : _data(f.vd, format, (msg) => fail("vd", msg));
    // §5.1.7 opens a pack with a record of base fields only: it sets them and is no measurement.
    if (_REGULAR.every((l) => f[l] === undefined) && Object.keys(f).length > 0) continue;
    const given = _VALUES.filter((l) => f[l] !== undefined);
    if (given.length > 1) fail(given[1], `label "${given[1]}" together with "${given[0]}": a record holds one value`);
    const rs = bs === undefined && s === undefined ? undefined : sum(bs ?? 0, s ?? 0, "bs", "s");
    if (given.length === 0 && rs === undefined) fail("v", 'a record holds no value ("v", "vs", "vb" or "vd") and no sum ("s")');
    if (bn === undefined && n === undefined) fail("n", 'no name (neither "bn" nor "n")');
    const name = (bn ?? "") + (n ?? "");
    if (!_NAME.test(name)) {
      fail(n === undefined ? "bn" : "n", `name ${JSON.stringify(name)} is not a SenML name: it starts with a letter or digit, then only letters, digits and - : . / _`);
    }
    let time = sum(bt, t ?? 0, "bt", "t");
    if (time < _ABSOLUTE) {
      // §4.5.3: below 2**28 the time counts from now; what results must be absolute to be resolved.
      const rel = time;
      time += now;
      if (time < _ABSOLUTE) fail(t === undefined ? "bt" : "t", `time ${rel} s from now falls before 2**28 s (1978-07-04), so it cannot be made absolute`);
    }
    const r: SenmlResolved = { n: name, t: time };
    const unit = u ?? bu;
    if (unit !== undefined) r.u = unit;
    if (v !== undefined) r.v = sum(bv, v, "bv", "v");
    if (vs !== undefined) r.vs = vs;
    if (f.vb !== undefined) r.vb = f.vb as boolean;
    if (vd !== undefined) r.vd = vd;
    if (rs !== undefined) r.s = rs;
    if (ut !== undefined) r.ut = ut;
    if (bver !== 10) r.bver = bver;
    out.push(r);
  }
  // §4.6: resolved records are in chronological order; ties keep the pack's order.
  const order = out.map((_, i) => i);
  order.sort((a, b) => out[a]!.t - out[b]!.t || a - b);
  return order.map((i) => out[i]!);
}

/** The known fields of record `i`; unknown labels are dropped, unknown ones ending in `_` refused. */
function _fields(rec: unknown, i: number): _Fields {
  const f: _Fields = {};
  const put = (key: unknown, value: unknown) => {
    let label: string | undefined;
    if (typeof key === "string") label = key;
    else if ((typeof key === "number" && Number.isInteger(key)) || typeof key === "bigint") {
      const k = Number(key);
      if (k >= -6 && k <= 8) label = _CBOR[k + 6];
    }
    if (label === undefined) return; // an integer (or other) key outside Table 4: an unknown label
    if (!_KNOWN.includes(label)) {
      if (label.endsWith("_")) throw new SenmlError(`SenML record ${i}: unknown label "${label}" (labels ending in _ must be understood)`, i, label);
      return;
    }
    if (f[label as _Label] !== undefined) throw new SenmlError(`SenML record ${i}: label "${label}" appears twice`, i, label);
    f[label as _Label] = value;
  };
  if (rec instanceof Map) rec.forEach((value, key) => put(key, value));
  else if (Object.prototype.toString.call(rec) === "[object Object]") {
    const o = rec as Record<string, unknown>;
    for (const k of Object.keys(o)) put(k, o[k]);
  } else throw new SenmlError(`SenML record ${i}: not a map (got ${_kind(rec)})`, i, undefined);
  return f;
}

/** A JSON or CBOR number (or bigint, or for CBOR a decimal fraction, tag 4) as a finite number. */
function _number(x: unknown, format: "json" | "cbor", fail: (why: string) => never): number {
  let n: number;
  if (typeof x === "number") n = x;
  else if (typeof x === "bigint") n = Number(x);
  else if (format === "cbor" && _isTag(x) && Number(x.tag) === 4) {
    const [e, m] = Array.isArray(x.value) && x.value.length === 2 ? x.value : [];
    if (!_isInt(e) || !_isInt(m)) fail("a malformed decimal fraction (tag 4)");
    const ex = Number(e);
    n = ex >= 0 ? Number(m) * 10 ** ex : Number(m) / 10 ** -ex;
  } else return fail(_kind(x));
  return Number.isFinite(n) ? n : fail(String(n));
}

/** A Data Value: a byte string in CBOR, base64url without padding (RFC 4648 §5) in JSON. */
function _data(x: unknown, format: "json" | "cbor", fail: (msg: string) => never): Uint8Array {
  if (format === "cbor") return x instanceof Uint8Array ? x : fail(`"vd" must be a byte string, got ${_kind(x)}`);
  if (typeof x !== "string") return fail(`"vd" must be base64url text, got ${_kind(x)}`);
  if (x.length % 4 === 1) fail(`"vd" is not base64url: ${x.length} characters cannot encode whole bytes`);
  const out = new Uint8Array(Math.floor((x.length * 3) / 4));
  let acc = 0, bits = 0, o = 0;
  for (let i = 0; i < x.length; i++) {
    const c = x.charCodeAt(i);
    const d = c >= 65 && c <= 90 ? c - 65 : c >= 97 && c <= 122 ? c - 71 : c >= 48 && c <= 57 ? c + 4 : c === 45 ? 62 : c === 95 ? 63 : -1;
    if (d < 0) fail(`"vd" is not base64url without padding (RFC 4648 §5): ${JSON.stringify(x[i])} at offset ${i}`);
    acc = ((acc << 6) | d) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

function _isTag(x: unknown): x is { tag: number | bigint; value: unknown } {
  return typeof x === "object" && x !== null && (x as Record<symbol, unknown>)[_CBOR_TAG] === true;
}

function _isInt(x: unknown): x is number | bigint {
  return typeof x === "bigint" || Number.isSafeInteger(x);
}

function _kind(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  if (x instanceof Uint8Array) return "a byte string";
  if (x instanceof Map) return "a map";
  if (typeof x === "number") return String(x);
  return typeof x === "string" ? "a string" : typeof x === "object" ? "an object" : `a ${typeof x}`;
}
