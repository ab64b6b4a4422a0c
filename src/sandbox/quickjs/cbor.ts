/**
 * A small CBOR codec that runs inside the QuickJS sandbox (which has no cbor-x, no TextEncoder).
 * It reads and writes what the host's cbor-x does, so values cross the boundary exactly: byte
 * strings as Uint8Array, 64-bit integers and tags 2/3 as bigint, tag 1/0 as Date, tag 259 as Map,
 * tag 258 as Set, typed arrays as tags 64–86, maps with other keys as objects with string keys.
 * @module
 */

/** UTF-8 encode (the sandbox has no TextEncoder). */
export function utf8Encode(s: string): Uint8Array {
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

/** UTF-8 decode, replacing invalid sequences with U+FFFD. */
export function utf8Decode(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length;) {
    const c = b[i++]!;
    let cp = 0xfffd;
    const need = c < 0x80 ? 0 : c >= 0xf0 && c < 0xf8 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
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
    s += String.fromCodePoint(cp > 0x10ffff ? 0xfffd : cp);
  }
  return s;
}

// Typed arrays by CBOR tag (RFC 8746, little endian), as cbor-x writes them.
const _TYPED: Record<number, string> = {
  64: "Uint8Array", 68: "Uint8ClampedArray", 69: "Uint16Array", 70: "Uint32Array", 71: "BigUint64Array",
  72: "Int8Array", 77: "Int16Array", 78: "Int32Array", 79: "BigInt64Array", 85: "Float32Array", 86: "Float64Array",
};

class _Writer {
  buf = new Uint8Array(256);
  len = 0;
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
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
  head(major: number, n: number | bigint): void {
    const m = major << 5;
    if (typeof n === "bigint" || n > 0xffffffff) {
      const v = BigInt(n);
      this.byte(m | 27);
      for (let s = 56n; s >= 0n; s -= 8n) this.byte(Number((v >> s) & 0xffn));
    } else if (n < 24) this.byte(m | n);
    else if (n < 0x100) (this.byte(m | 24), this.byte(n));
    else if (n < 0x10000) (this.byte(m | 25), this.byte(n >> 8), this.byte(n & 255));
    else (this.byte(m | 26), this.byte(n >>> 24), this.byte((n >> 16) & 255), this.byte((n >> 8) & 255), this.byte(n & 255));
  }
  float(x: number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x);
    this.byte(0xfb);
    this.bytes(b);
  }
}

const _U64 = (1n << 64n) - 1n;

function _bigBytes(v: bigint): Uint8Array {
  const out: number[] = [];
  for (; v > 0n; v >>= 8n) out.unshift(Number(v & 0xffn));
  return new Uint8Array(out);
}

function _enc(w: _Writer, v: unknown, depth: number): void {
  if (depth > 64) throw new RangeError("CBOR encode: value nested deeper than 64 (cycle?)");
  switch (typeof v) {
    case "number":
      // As cbor-x: integers beyond 32 bits travel as floats (8-byte integers decode as bigint).
      if (Number.isInteger(v) && Math.abs(v) <= 0xffffffff && !Object.is(v, -0)) return v >= 0 ? w.head(0, v) : w.head(1, -1 - v);
      return w.float(v);
    case "bigint":
      if (v >= 0n && v <= _U64) return w.head(0, v);
      if (v < 0n && -1n - v <= _U64) return w.head(1, -1n - v);
      w.byte(v >= 0n ? 0xc2 : 0xc3);
      return _encBytes(w, _bigBytes(v >= 0n ? v : -1n - v));
    case "string":
      return _encText(w, v);
    case "boolean":
      return w.byte(v ? 0xf5 : 0xf4);
    case "undefined":
      return w.byte(0xf7);
    case "function":
    case "symbol":
      return w.byte(0xf7);
  }
  if (v === null) return w.byte(0xf6);
  if (v instanceof Uint8Array) return _encBytes(w, v);
  if (v instanceof Date) {
    const t = v.getTime() / 1000;
    w.byte(0xc1);
    return Number.isSafeInteger(t) ? w.head(t >= 0 ? 0 : 1, t >= 0 ? t : -1 - t) : w.float(t);
  }
  if (Array.isArray(v)) {
    w.head(4, v.length);
    for (const x of v) _enc(w, x, depth + 1);
    return;
  }
  if (v instanceof Map) {
    w.head(6, 259);
    w.head(5, v.size);
    for (const [k, x] of v) (_enc(w, k, depth + 1), _enc(w, x, depth + 1));
    return;
  }
  if (v instanceof Set) {
    w.head(6, 258);
    w.head(4, v.size);
    for (const x of v) _enc(w, x, depth + 1);
    return;
  }
  if (ArrayBuffer.isView(v)) {
    const tag = Object.keys(_TYPED).find((t) => _TYPED[Number(t)] === v.constructor.name);
    if (tag) {
      w.head(6, Number(tag));
      return _encBytes(w, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    }
  }
  if (v instanceof ArrayBuffer) return _encBytes(w, new Uint8Array(v));
  const keys = Object.keys(v as object);
  w.head(5, keys.length);
  for (const k of keys) (_encText(w, k), _enc(w, (v as Record<string, unknown>)[k], depth + 1));
}

function _encBytes(w: _Writer, b: Uint8Array): void {
  w.head(2, b.length);
  w.bytes(b);
}

function _encText(w: _Writer, s: string): void {
  const b = utf8Encode(s);
  w.head(3, b.length);
  w.bytes(b);
}

/** Encode a value as one CBOR data item. */
export function cborEncode(v: unknown): Uint8Array {
  const w = new _Writer();
  _enc(w, v, 0);
  return w.buf.slice(0, w.len);
}

interface _R {
  b: Uint8Array;
  p: number;
  dv: DataView;
}

const _BREAK = Symbol("break");

function _need(r: _R, n: number): void {
  if (r.p + n > r.b.length) throw new RangeError(`CBOR decode: unexpected end of input at byte ${r.p}`);
}

function _arg(r: _R, ai: number): number | bigint {
  if (ai < 24) return ai;
  const n = ai === 24 ? 1 : ai === 25 ? 2 : ai === 26 ? 4 : ai === 27 ? 8 : 0;
  if (!n) throw new RangeError(`CBOR decode: invalid additional information ${ai} at byte ${r.p}`);
  _need(r, n);
  const p = r.p;
  r.p += n;
  if (n === 1) return r.b[p]!;
  if (n === 2) return r.dv.getUint16(p);
  if (n === 4) return r.dv.getUint32(p);
  return r.dv.getBigUint64(p);
}

function _len(r: _R, ai: number): number {
  const n = _arg(r, ai);
  if (typeof n === "bigint" || n > r.b.length - r.p + 1e6) throw new RangeError(`CBOR decode: length ${n} too large`);
  return n;
}

function _chunks(r: _R, major: number, ai: number): Uint8Array {
  if (ai !== 31) {
    const n = _len(r, ai);
    _need(r, n);
    const out = r.b.slice(r.p, r.p + n);
    r.p += n;
    return out;
  }
  const parts: Uint8Array[] = [];
  for (;;) {
    _need(r, 1);
    if (r.b[r.p] === 0xff) {
      r.p++;
      break;
    }
    const ib = r.b[r.p++]!;
    if (ib >> 5 !== major || (ib & 31) === 31) throw new RangeError("CBOR decode: invalid chunk in indefinite-length string");
    parts.push(_chunks(r, major, ib & 31));
  }
  const out = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
  let o = 0;
  for (const x of parts) (out.set(x, o), (o += x.length));
  return out;
}

function _half(h: number): number {
  const e = (h >> 10) & 31;
  const f = h & 1023;
  const v = e === 0 ? f * 2 ** -24 : e === 31 ? (f ? NaN : Infinity) : (1 + f / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}

function _dec(r: _R, depth: number): unknown {
  if (depth > 256) throw new RangeError("CBOR decode: nested deeper than 256");
  _need(r, 1);
  const ib = r.b[r.p++]!;
  const major = ib >> 5;
  const ai = ib & 31;
  switch (major) {
    case 0:
    case 1: {
      const n = _arg(r, ai);
      if (typeof n === "bigint") return major === 0 ? n : -1n - n;
      return major === 0 ? n : -1 - n;
    }
    case 2:
      return _chunks(r, 2, ai);
    case 3:
      return utf8Decode(_chunks(r, 3, ai));
    case 4: {
      const out: unknown[] = [];
      const n = ai === 31 ? Infinity : _len(r, ai);
      for (let i = 0; i < n; i++) {
        const x = _dec(r, depth + 1);
        if (x === _BREAK) break;
        out.push(x);
      }
      return out;
    }
    case 5: {
      const out: Record<string, unknown> = {};
      for (const [k, v] of _pairs(r, ai, depth)) {
        const key = String(k);
        if (key === "__proto__") Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
        else out[key] = v;
      }
      return out;
    }
    case 6:
      return _tag(r, Number(_arg(r, ai)), depth);
    default:
      if (ai === 20) return false;
      if (ai === 21) return true;
      if (ai === 22) return null;
      if (ai === 23) return undefined;
      if (ai === 25) return (_need(r, 2), (r.p += 2), _half(r.dv.getUint16(r.p - 2)));
      if (ai === 26) return (_need(r, 4), (r.p += 4), r.dv.getFloat32(r.p - 4));
      if (ai === 27) return (_need(r, 8), (r.p += 8), r.dv.getFloat64(r.p - 8));
      if (ai === 31) return _BREAK;
      if (ai === 24) return (_need(r, 1), r.b[r.p++]); // simple value: as its number
      return ai;
  }
}

function _pairs(r: _R, ai: number, depth: number): [unknown, unknown][] {
  const out: [unknown, unknown][] = [];
  const n = ai === 31 ? Infinity : _len(r, ai);
  for (let i = 0; i < n; i++) {
    const k = _dec(r, depth + 1);
    if (k === _BREAK) break;
    out.push([k, _dec(r, depth + 1)]);
  }
  return out;
}

function _tag(r: _R, tag: number, depth: number): unknown {
  if (tag === 259 && r.p < r.b.length && r.b[r.p]! >> 5 === 5) {
    const ib = r.b[r.p++]!;
    return new Map(_pairs(r, ib & 31, depth + 1));
  }
  const v = _dec(r, depth + 1);
  if (tag === 0 && typeof v === "string") return new Date(v);
  if (tag === 1 && (typeof v === "number" || typeof v === "bigint")) return new Date(Number(v) * 1000);
  if ((tag === 2 || tag === 3) && v instanceof Uint8Array) {
    let n = 0n;
    for (const x of v) n = (n << 8n) | BigInt(x);
    return tag === 2 ? n : -1n - n;
  }
  if (tag === 258 && Array.isArray(v)) return new Set(v);
  const typed = _TYPED[tag];
  if (typed && v instanceof Uint8Array) {
    const C = (globalThis as unknown as Record<string, new (b: ArrayBuffer) => unknown>)[typed]!;
    return new C(v.slice().buffer);
  }
  return v; // other tags: the tagged value itself
}

/** Decode one CBOR data item (trailing bytes are an error). */
export function cborDecode(b: Uint8Array): unknown {
  const r: _R = { b, p: 0, dv: new DataView(b.buffer, b.byteOffset, b.byteLength) };
  const v = _dec(r, 0);
  if (v === _BREAK) throw new RangeError("CBOR decode: unexpected break");
  if (r.p !== b.length) throw new RangeError(`CBOR decode: ${b.length - r.p} trailing bytes`);
  return v;
}
