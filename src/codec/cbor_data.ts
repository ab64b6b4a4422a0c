/**
 * The CBOR data model (RFC 8949) as JavaScript values, and the one codec that reads and writes it:
 * the host, the worker tier and the wasm tier's sandbox (QuickJS, which has no TextEncoder) all
 * run this module, so a value crosses every boundary unchanged. Pure: no imports, no globals
 * beyond what QuickJS has.
 *
 * | CBOR item | JavaScript value | written back as |
 * |---|---|---|
 * | unsigned / negative integer | `number` when safe (|n| < 2^53), else `bigint` | the same integer |
 * | bignum (tags 2, 3) | `bigint` | an integer when it fits 64 bits, else the bignum |
 * | byte string (also indefinite) | `Uint8Array` | a definite byte string (major type 2) |
 * | text string (also indefinite) | `string` | a definite text string |
 * | array | `Array` | a definite array |
 * | map, every key a text string | plain object | a map with text keys, in the same order |
 * | map with any other key | `Map` (keys as decoded) | a map with those keys, in the same order |
 * | half, single, double float | `number` (-0, NaN, ±Infinity kept) | the shortest float that holds it exactly |
 * | false, true, null, undefined | `false`, `true`, `null`, `undefined` | the same |
 * | other simple values | {@link Simple} | the same simple value |
 * | tag 0 (RFC 3339 text), tag 1 (epoch) | `Date`, which remembers its tag and content | the original tag and content while the time is unchanged, else tag 1 |
 * | tags 68–87 that JS has an array for (little endian) | the typed array (`Float32Array`, …) | the same tag |
 * | tag 258 over an array | `Set` | tag 258 |
 * | any other tag | {@link Tag} `{ tag, value }` | the same tag over the value |
 *
 * A float whose value is an integer (`1.0`) is the number 1 in JavaScript and goes back out as
 * the integer 1: JavaScript has one number type. Decoders compare them equal; CBOR's data model
 * calls them different. Indefinite lengths become definite. Both are the same data to every
 * JavaScript decoder.
 * @module
 */

const _TAG = Symbol.for("outpost.cbor.tag");
const _SIMPLE = Symbol.for("outpost.cbor.simple");

/**
 * A tagged data item whose tag the codec gives no JavaScript type of its own: kept, and written
 * back unchanged. Recognised by a registered symbol, so copies of this class from different
 * bundles (a handler's and the host's) are the same to the encoder.
 */
export class Tag {
  /** The tag number. */
  readonly tag: number | bigint;
  /** The tagged content, itself a CBOR value. */
  readonly value: unknown;
  constructor(tag: number | bigint, value: unknown) {
    if (typeof tag === "number" ? !Number.isSafeInteger(tag) || tag < 0 : tag < 0n || tag >= 1n << 64n) throw new RangeError(`A CBOR tag number is an integer from 0 to 2^64-1, got ${tag}`);
    this.tag = tag;
    this.value = value;
  }
}
Object.defineProperty(Tag.prototype, _TAG, { value: true });

/** A simple value other than false, true, null and undefined (0–19, 32–255). */
export class Simple {
  readonly value: number;
  constructor(value: number) {
    if (!Number.isInteger(value) || value < 0 || value > 255 || (value >= 20 && value < 32)) {
      throw new RangeError(`A CBOR simple value is 0 to 19 or 32 to 255 (20–23 are false, true, null, undefined), got ${value}`);
    }
    this.value = value;
  }
}
Object.defineProperty(Simple.prototype, _SIMPLE, { value: true });

/** Whether `v` is a {@link Tag} (of any copy of this module). */
export function isTag(v: unknown): v is Tag {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[_TAG] === true;
}

/** Whether `v` is a {@link Simple} (of any copy of this module). */
export function isSimple(v: unknown): v is Simple {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[_SIMPLE] === true;
}

/** Raised for bytes that are not one well-formed, valid CBOR item, or a value CBOR cannot hold. */
export class CborError extends Error {
  override name = "CborError";
  /** Byte offset where the problem was found (-1 when encoding). */
  offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.offset = offset;
  }
}

// ---------------------------------------------------------------------------------------------
// UTF-8 (QuickJS has no TextEncoder; the host's is used where it exists).

const _te: { encode(s: string): Uint8Array } | undefined = typeof TextEncoder === "function" ? new TextEncoder() : undefined;
const _td: { decode(b: Uint8Array): string } | undefined = typeof TextDecoder === "function" ? new TextDecoder() : undefined;

/** UTF-8 encode; a lone surrogate becomes U+FFFD. */
export function utf8Encode(s: string): Uint8Array {
  if (_te) return _te.encode(s);
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

/** UTF-8 decode, replacing invalid sequences with U+FFFD (untrusted text was checked before). */
export function utf8Decode(b: Uint8Array): string {
  if (b.length < 24) {
    let s = "";
    for (let i = 0; i < b.length; i++) {
      const c = b[i]!;
      if (c >= 0x80) return _utf8Slow(b);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return _utf8Slow(b);
}

function _utf8Slow(b: Uint8Array): string {
  if (_td) return _td.decode(b);
  let s = "";
  for (let i = 0; i < b.length;) {
    const c = b[i++]!;
    let cp = 0xfffd;
    const need = c < 0x80 ? 0 : c >= 0xf0 && c < 0xf8 ? 3 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
    if (need === 0) cp = c;
    else if (need > 0 && i + need <= b.length) {
      let v = c & (need === 1 ? 31 : need === 2 ? 15 : 7);
      let ok = true;
      for (let k = 0; k < need; k++) {
        const x = b[i + k]!;
        if ((x & 0xc0) !== 0x80) ok = false;
        v = (v << 6) | (x & 63);
      }
      if (ok) {
        i += need;
        cp = v;
      }
    }
    s += String.fromCodePoint(cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000) ? 0xfffd : cp);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Dates remember what they were decoded from, so an unchanged one goes back out as it came in.

interface _DateOrigin {
  tag: 0 | 1;
  value: unknown;
  ms: number;
}
const _origins = new WeakMap<Date, _DateOrigin>();

const _RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
const _MAX_DATE_MS = 8.64e15;

function _date(tag: 0 | 1, value: unknown): Date | undefined {
  let ms: number;
  if (tag === 0) {
    if (typeof value !== "string" || !_RFC3339.test(value)) return undefined;
    ms = Date.parse(value.toUpperCase());
  } else if (typeof value === "number") ms = value * 1000;
  else if (typeof value === "bigint" && value >= -8_640_000_000_000n && value <= 8_640_000_000_000n) ms = Number(value) * 1000;
  else return undefined;
  if (!Number.isFinite(ms) || Math.abs(ms) > _MAX_DATE_MS) return undefined;
  const d = new Date(ms);
  _origins.set(d, { tag, value, ms: d.getTime() });
  return d;
}

// ---------------------------------------------------------------------------------------------
// Typed arrays (RFC 8746), the little-endian tags JavaScript has a type for.

type _TypedCtor = { new (b: ArrayBuffer): ArrayBufferView; readonly BYTES_PER_ELEMENT: number; readonly name: string };
const _TYPED_NAMES: Record<number, string> = {
  68: "Uint8ClampedArray", 69: "Uint16Array", 70: "Uint32Array", 71: "BigUint64Array", 72: "Int8Array",
  77: "Int16Array", 78: "Int32Array", 79: "BigInt64Array", 85: "Float32Array", 86: "Float64Array",
};
const _TAG_OF_TYPED: Record<string, number> = {};
for (const [t, n] of Object.entries(_TYPED_NAMES)) _TAG_OF_TYPED[n] = Number(t);

function _typed(tag: number, value: unknown): ArrayBufferView | undefined {
  const name = _TYPED_NAMES[tag];
  if (!name || !(value instanceof Uint8Array)) return undefined;
  const C = (globalThis as unknown as Record<string, _TypedCtor | undefined>)[name];
  if (!C || value.length % C.BYTES_PER_ELEMENT !== 0) return undefined;
  return new C(value.slice().buffer);
}

// ---------------------------------------------------------------------------------------------
// Encoding.

class _Writer {
  buf = new Uint8Array(512);
  dv = new DataView(this.buf.buffer);
  len = 0;
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
    this.dv = new DataView(b.buffer);
  }
  byte(x: number): void {
    this.ensure(1);
    this.buf[this.len++] = x;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** An item head: major type and argument, in the shortest form (preferred serialization). */
  head(major: number, n: number): void {
    const m = major << 5;
    this.ensure(9);
    const b = this.buf;
    if (n < 24) b[this.len++] = m | n;
    else if (n < 0x100) {
      b[this.len++] = m | 24;
      b[this.len++] = n;
    } else if (n < 0x10000) {
      b[this.len++] = m | 25;
      this.dv.setUint16(this.len, n);
      this.len += 2;
    } else if (n <= 0xffffffff) {
      b[this.len++] = m | 26;
      this.dv.setUint32(this.len, n);
      this.len += 4;
    } else {
      b[this.len++] = m | 27;
      this.dv.setUint32(this.len, Math.floor(n / 0x100000000));
      this.dv.setUint32(this.len + 4, n >>> 0);
      this.len += 8;
    }
  }
  headBig(major: number, n: bigint): void {
    if (n <= 0xffffffffn) return this.head(major, Number(n));
    this.ensure(9);
    this.buf[this.len++] = (major << 5) | 27;
    this.dv.setBigUint64(this.len, n);
    this.len += 8;
  }
  /** The shortest of half, single and double precision that holds `x` exactly. */
  float(x: number): void {
    this.ensure(9);
    if (x !== x) {
      this.buf[this.len++] = 0xf9;
      this.buf[this.len++] = 0x7e;
      this.buf[this.len++] = 0x00;
      return;
    }
    if (Math.fround(x) === x) {
      this.dv.setFloat32(this.len + 1, x);
      const bits = this.dv.getUint32(this.len + 1);
      const h = _half(bits);
      if (h >= 0) {
        this.buf[this.len++] = 0xf9;
        this.dv.setUint16(this.len, h);
        this.len += 2;
      } else {
        this.buf[this.len] = 0xfa;
        this.len += 5;
      }
      return;
    }
    this.buf[this.len++] = 0xfb;
    this.dv.setFloat64(this.len, x);
    this.len += 8;
  }
}

/** The half-precision bits of a single-precision float, or -1 when it needs more precision. */
function _half(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : -1; // NaN is written before this
  if (exp === 0 && mant === 0) return sign;
  const e = exp - 127;
  if (e >= -14 && e <= 15) return mant & 0x1fff ? -1 : sign | ((e + 15) << 10) | (mant >> 13);
  if (e >= -24 && e < -14) {
    const full = mant | 0x800000;
    const shift = 13 + (-14 - e);
    return full & ((1 << shift) - 1) ? -1 : sign | (full >> shift);
  }
  return -1;
}

const _U64 = (1n << 64n) - 1n;
const _MAX_DEPTH_OUT = 128;

function _enc(w: _Writer, v: unknown, depth: number): void {
  if (depth > _MAX_DEPTH_OUT) throw new CborError(`Cannot encode as CBOR: nested deeper than ${_MAX_DEPTH_OUT} (a cycle?)`, -1);
  switch (typeof v) {
    case "number":
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) return v >= 0 ? w.head(0, v) : w.head(1, -1 - v);
      return w.float(v);
    case "string":
      return _encText(w, v);
    case "boolean":
      return w.byte(v ? 0xf5 : 0xf4);
    case "undefined":
    case "function":
    case "symbol":
      return w.byte(0xf7);
    case "bigint":
      if (v >= 0n && v <= _U64) return w.headBig(0, v);
      if (v < 0n && -1n - v <= _U64) return w.headBig(1, -1n - v);
      w.byte(v >= 0n ? 0xc2 : 0xc3);
      return _encBytes(w, _bigBytes(v >= 0n ? v : -1n - v));
  }
  if (v === null) return w.byte(0xf6);
  if (Array.isArray(v)) {
    w.head(4, v.length);
    for (let i = 0; i < v.length; i++) _enc(w, v[i], depth + 1);
    return;
  }
  if (v instanceof Uint8Array) return _encBytes(w, v);
  if (v instanceof Date) return _encDate(w, v, depth);
  if (v instanceof Map) {
    w.head(5, v.size);
    for (const [k, x] of v) {
      _enc(w, k, depth + 1);
      _enc(w, x, depth + 1);
    }
    return;
  }
  const o = v as Record<string | symbol, unknown>;
  if (o[_TAG] === true) {
    const t = (v as Tag).tag;
    if (typeof t === "bigint") w.headBig(6, t);
    else w.head(6, t);
    return _enc(w, (v as Tag).value, depth + 1);
  }
  if (o[_SIMPLE] === true) {
    const s = (v as Simple).value;
    if (s < 24) w.byte(0xe0 | s);
    else (w.byte(0xf8), w.byte(s));
    return;
  }
  if (v instanceof Set) {
    w.head(6, 258);
    w.head(4, v.size);
    for (const x of v) _enc(w, x, depth + 1);
    return;
  }
  if (ArrayBuffer.isView(v)) {
    const tag = _TAG_OF_TYPED[v.constructor.name];
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    if (tag !== undefined) w.head(6, tag);
    return _encBytes(w, bytes);
  }
  if (v instanceof ArrayBuffer) return _encBytes(w, new Uint8Array(v));
  const keys = Object.keys(o);
  w.head(5, keys.length);
  for (const k of keys) {
    _encText(w, k);
    _enc(w, o[k], depth + 1);
  }
}

function _encDate(w: _Writer, d: Date, depth: number): void {
  const origin = _origins.get(d);
  const ms = d.getTime();
  if (origin && origin.ms === ms) {
    w.head(6, origin.tag);
    return _enc(w, origin.value, depth + 1);
  }
  if (!Number.isFinite(ms)) throw new CborError("Cannot encode an invalid Date as CBOR", -1);
  w.head(6, 1);
  _enc(w, ms / 1000, depth + 1);
}

function _encBytes(w: _Writer, b: Uint8Array): void {
  w.head(2, b.length);
  w.bytes(b);
}

function _encText(w: _Writer, s: string): void {
  const n = s.length;
  if (n < 256) {
    // Short ASCII, the common case (map keys, units): no encoder call.
    const h = n < 24 ? 1 : 2;
    w.ensure(n + h);
    const at = w.len + h;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      w.buf[at + i] = c;
    }
    if (i === n) {
      if (h === 1) w.buf[w.len] = 0x60 | n;
      else (w.buf[w.len] = 0x78, (w.buf[w.len + 1] = n));
      w.len = at + n;
      return;
    }
  }
  const b = utf8Encode(s);
  w.head(3, b.length);
  w.bytes(b);
}

function _bigBytes(v: bigint): Uint8Array {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

let _shared: _Writer | undefined;

/**
 * Encode a value as one CBOR data item (preferred serialization: shortest heads and floats).
 * @returns bytes that own their memory
 * @throws CborError for a cycle or an invalid Date
 */
export function cborEncode(v: unknown): Uint8Array {
  // One reused buffer; a getter that encodes while we encode gets a writer of its own.
  const w = _shared ?? new _Writer();
  _shared = undefined;
  w.len = 0;
  try {
    _enc(w, v, 0);
    return w.buf.slice(0, w.len);
  } finally {
    if (w.buf.length <= 1 << 20) _shared = w;
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding.

interface _R {
  b: Uint8Array;
  p: number;
  dv: DataView;
}

const _BREAK = Symbol("break");

function _err(r: _R, msg: string): never {
  throw new CborError(`Malformed CBOR at byte ${r.p}: ${msg}`, r.p);
}

function _need(r: _R, n: number): void {
  if (r.p + n > r.b.length) _err(r, "unexpected end of input");
}

/** An argument: a number when it is below 2^53, else a bigint. */
function _arg(r: _R, ai: number): number | bigint {
  if (ai < 24) return ai;
  const p = r.p;
  switch (ai) {
    case 24:
      _need(r, 1);
      r.p += 1;
      return r.b[p]!;
    case 25:
      _need(r, 2);
      r.p += 2;
      return r.dv.getUint16(p);
    case 26:
      _need(r, 4);
      r.p += 4;
      return r.dv.getUint32(p);
    case 27: {
      _need(r, 8);
      r.p += 8;
      const hi = r.dv.getUint32(p);
      return hi < 0x200000 ? hi * 0x100000000 + r.dv.getUint32(p + 4) : r.dv.getBigUint64(p);
    }
  }
  r.p--;
  return _err(r, `reserved additional information ${ai}`);
}

function _len(r: _R, ai: number): number {
  const n = _arg(r, ai);
  if (typeof n === "bigint" || n > r.b.length - r.p) _err(r, `length ${n} exceeds the ${r.b.length - r.p} bytes left`);
  return n;
}

function _string(r: _R, major: number, ai: number): Uint8Array {
  if (ai !== 31) {
    const n = _len(r, ai);
    const out = r.b.slice(r.p, r.p + n);
    r.p += n;
    return out;
  }
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    _need(r, 1);
    if (r.b[r.p] === 0xff) {
      r.p++;
      break;
    }
    const ib = r.b[r.p]!;
    if (ib >> 5 !== major || (ib & 31) === 31) _err(r, "invalid chunk in indefinite-length string");
    r.p++;
    const chunk = _string(r, major, ib & 31);
    parts.push(chunk);
    total += chunk.length;
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (const x of parts) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}

function _halfValue(h: number): number {
  const e = (h >> 10) & 31;
  const f = h & 1023;
  const v = e === 0 ? f * 2 ** -24 : e === 31 ? (f ? NaN : Infinity) : (1 + f / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}

const _MAX_DEPTH_IN = 512;

function _dec(r: _R, depth: number): unknown {
  if (depth > _MAX_DEPTH_IN) _err(r, `nested deeper than ${_MAX_DEPTH_IN}`);
  _need(r, 1);
  const ib = r.b[r.p++]!;
  const major = ib >> 5;
  const ai = ib & 31;
  switch (major) {
    case 0: {
      if (ai === 31) return (r.p--, _err(r, "indefinite length on an integer"));
      return _arg(r, ai);
    }
    case 1: {
      if (ai === 31) return (r.p--, _err(r, "indefinite length on an integer"));
      const n = _arg(r, ai);
      if (typeof n === "bigint") return -1n - n;
      return n <= 9007199254740990 ? -1 - n : -1n - BigInt(n);
    }
    case 2:
      return _string(r, 2, ai);
    case 3:
      return utf8Decode(_string(r, 3, ai));
    case 4: {
      const out: unknown[] = [];
      if (ai === 31) {
        for (;;) {
          const x = _dec(r, depth + 1);
          if (x === _BREAK) return out;
          out.push(x);
        }
      }
      const n = _len(r, ai);
      for (let i = 0; i < n; i++) {
        const x = _dec(r, depth + 1);
        if (x === _BREAK) (r.p--, _err(r, "unexpected break"));
        out.push(x);
      }
      return out;
    }
    case 5:
      return _map(r, ai, depth);
    case 6: {
      if (ai === 31) return (r.p--, _err(r, "indefinite length on a tag"));
      const tag = _arg(r, ai);
      const start = r.p;
      const v = _dec(r, depth + 1);
      if (v === _BREAK) (r.p = start, _err(r, "unexpected break"));
      return _tagged(tag, v);
    }
    default:
      switch (ai) {
        case 20:
          return false;
        case 21:
          return true;
        case 22:
          return null;
        case 23:
          return undefined;
        case 24: {
          _need(r, 1);
          const s = r.b[r.p]!;
          if (s < 32) _err(r, `invalid simple value ${s} (0–31 take one byte)`);
          r.p++;
          return new Simple(s);
        }
        case 25:
          _need(r, 2);
          r.p += 2;
          return _halfValue(r.dv.getUint16(r.p - 2));
        case 26:
          _need(r, 4);
          r.p += 4;
          return r.dv.getFloat32(r.p - 4);
        case 27:
          _need(r, 8);
          r.p += 8;
          return r.dv.getFloat64(r.p - 8);
        case 31:
          return _BREAK;
      }
      if (ai < 20) return new Simple(ai);
      r.p--;
      return _err(r, `reserved additional information ${ai}`);
  }
}

/** A map: a plain object while every key is a text string, a `Map` once one is not. */
function _map(r: _R, ai: number, depth: number): unknown {
  const n = ai === 31 ? Infinity : _len(r, ai);
  let obj: Record<string, unknown> | undefined = {};
  let map: Map<unknown, unknown> | undefined;
  for (let i = 0; i < n; i++) {
    const at = r.p;
    const k = _dec(r, depth + 1);
    if (k === _BREAK) {
      if (n === Infinity) break;
      r.p = at;
      _err(r, "unexpected break");
    }
    const v = _dec(r, depth + 1);
    if (v === _BREAK) (r.p--, _err(r, "a map key without a value"));
    if (obj && typeof k === "string") {
      if (Object.prototype.hasOwnProperty.call(obj, k)) (r.p = at, _err(r, `duplicate map key ${JSON.stringify(k)}`));
      if (k === "__proto__") Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
      else obj[k] = v;
      continue;
    }
    if (obj) {
      map = new Map(Object.entries(obj));
      obj = undefined;
    }
    if (map!.has(k)) (r.p = at, _err(r, `duplicate map key ${typeof k === "bigint" ? `${k}` : JSON.stringify(k)}`));
    map!.set(k, v);
  }
  return obj ?? map;
}

function _tagged(tag: number | bigint, v: unknown): unknown {
  if (typeof tag === "number") {
    switch (tag) {
      case 0:
      case 1:
        return _date(tag, v) ?? new Tag(tag, v);
      case 2:
      case 3:
        if (v instanceof Uint8Array) {
          let n = 0n;
          if (v.length) {
            let hex = "";
            for (let i = 0; i < v.length; i++) hex += (v[i]! < 16 ? "0" : "") + v[i]!.toString(16);
            n = BigInt(`0x${hex}`);
          }
          return tag === 2 ? n : -1n - n;
        }
        break;
      case 258:
        if (Array.isArray(v)) return new Set(v);
        break;
      default:
        if (tag >= 68 && tag <= 87) {
          const t = _typed(tag, v);
          if (t) return t;
        }
    }
  }
  return new Tag(tag, v);
}

/**
 * Decode exactly one CBOR data item.
 * @throws CborError for malformed input, trailing bytes, or a duplicate map key
 */
export function cborDecode(b: Uint8Array): unknown {
  const r: _R = { b, p: 0, dv: new DataView(b.buffer, b.byteOffset, b.byteLength) };
  const v = _dec(r, 0);
  if (v === _BREAK) (r.p--, _err(r, "unexpected break"));
  if (r.p !== b.length) _err(r, `${b.length - r.p} trailing bytes after the item`);
  return v;
}
