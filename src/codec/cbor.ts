import { CborError, cborDecode, cborEncode } from "./cbor_data.ts";

export { CborError };


/** Bounds applied to untrusted CBOR before anything is built from it. */
export interface CborLimits {
  /** Deepest nesting of arrays, maps and tags. */
  maxDepth: number;
  /** Most data items in one input (all readings of a sequence together). */
  maxItems: number;
  /**
   * Longest bignum (tags 2 and 3) in bytes: a sensor has no use for more, and a BigInt is built
   * from it on the caller's thread. Default 64 bytes (512 bits).
   */
  maxBignumBytes?: number;
}

/** Defaults for {@link CborLimits}: the same depth and item bounds apply to JSON readings. */
export const DEFAULT_CBOR_LIMITS: CborLimits = { maxDepth: 32, maxItems: 100_000, maxBignumBytes: 64 };

/** The one key refused in every map: a handler that copies a reading must not meet it. */
const _PROTO_KEY = [0x69, ...new TextEncoder().encode("__proto__")];
const _utf8 = new TextDecoder("utf-8", { fatal: true });

interface _Scan {
  b: Uint8Array;
  pos: number;
  items: number;
  limits: CborLimits;
}

function _fail(s: _Scan, msg: string): never {
  throw new CborError(`Malformed CBOR at byte ${s.pos}: ${msg}`, s.pos);
}

function _arg(s: _Scan, ai: number): number {
  if (ai < 24) return ai;
  const n = ai === 24 ? 1 : ai === 25 ? 2 : ai === 26 ? 4 : ai === 27 ? 8 : 0;
  if (n === 0) _fail(s, `reserved additional information ${ai}`);
  if (s.pos + n > s.b.length) _fail(s, "unexpected end of input");
  let v = 0;
  for (let i = 0; i < n; i++) v = v * 256 + s.b[s.pos + i]!;
  s.pos += n;
  return v;
}

function _item(s: _Scan, depth: number): void {
  if (depth > s.limits.maxDepth) _fail(s, `nesting deeper than ${s.limits.maxDepth}`);
  if (++s.items > s.limits.maxItems) _fail(s, `more than ${s.limits.maxItems} data items`);
  if (s.pos >= s.b.length) _fail(s, "unexpected end of input");
  const ib = s.b[s.pos++]!;
  const major = ib >> 5;
  const ai = ib & 31;
  if (ai === 31) return _indefinite(s, major, depth);
  const arg = _arg(s, ai);
  const left = s.b.length - s.pos;
  switch (major) {
    case 0:
    case 1:
      return;
    case 2:
    case 3:
      if (arg > left) _fail(s, `string length ${arg} exceeds the ${left} bytes left`);
      if (major === 3) _checkText(s, s.pos, arg);
      s.pos += arg;
      return;
    case 4:
      if (arg > left) _fail(s, `array of ${arg} items cannot fit in the ${left} bytes left`);
      for (let i = 0; i < arg; i++) _item(s, depth + 1);
      return;
    case 5:
      if (arg * 2 > left) _fail(s, `map of ${arg} pairs cannot fit in the ${left} bytes left`);
      for (let i = 0; i < arg; i++) {
        _key(s);
        _item(s, depth + 1);
        _item(s, depth + 1);
      }
      return;
    case 6:
      // Every tag is accepted: the ones without a JavaScript type of their own are kept as a Tag.
      if (arg === 2 || arg === 3) _bignum(s);
      return _item(s, depth + 1);
    default: // 7: simple values and floats; the argument bytes were consumed above
      if (ai === 24 && arg < 32) _fail(s, `invalid simple value ${arg}`);
      return;
  }
}

/** Text strings must be valid UTF-8 (RFC 8949 §3.1), as JSON's are: a handler gets what was sent. */
function _checkText(s: _Scan, at: number, length: number): void {
  try {
    _utf8.decode(s.b.subarray(at, at + length));
  } catch {
    _fail(s, "text string is not valid UTF-8");
  }
}

/** A map key must not be `__proto__`: a handler that copies a reading with spread or assign must not meet it. */
function _key(s: _Scan): void {
  const b = s.b;
  if (b[s.pos] !== 0x69 || s.pos + _PROTO_KEY.length > b.length) return;
  for (let i = 1; i < _PROTO_KEY.length; i++) if (b[s.pos + i] !== _PROTO_KEY[i]) return;
  _fail(s, 'the map key "__proto__" is not accepted');
}

/** A bignum's content: a definite byte string of at most `maxBignumBytes`. */
function _bignum(s: _Scan): void {
  const max = s.limits.maxBignumBytes ?? 64;
  const ib = s.b[s.pos];
  if (ib === undefined) return; // _item reports the missing content
  if (ib >> 5 !== 2 || (ib & 31) === 31) _fail(s, "a bignum (tag 2 or 3) must hold a definite byte string");
  const save = s.pos++;
  const n = _arg(s, ib & 31);
  s.pos = save;
  if (n > max) _fail(s, `bignum of ${n} bytes; at most ${max} bytes are accepted`);
}

function _indefinite(s: _Scan, major: number, depth: number): void {
  const isBreak = () => {
    if (s.pos >= s.b.length) _fail(s, "unexpected end of input (missing break)");
    if (s.b[s.pos] === 0xff) {
      s.pos++;
      return true;
    }
    return false;
  };
  switch (major) {
    case 2:
    case 3:
      while (!isBreak()) {
        const cb = s.b[s.pos]!;
        if (cb >> 5 !== major || (cb & 31) === 31) _fail(s, "invalid chunk in indefinite-length string");
        _item(s, depth + 1);
      }
      return;
    case 4:
      while (!isBreak()) _item(s, depth + 1);
      return;
    case 5:
      while (!isBreak()) {
        _key(s);
        _item(s, depth + 1);
        _item(s, depth + 1);
      }
      return;
    default:
      s.pos--;
      _fail(s, major === 7 ? "unexpected break" : "indefinite length on an integer or tag");
  }
}

/**
 * Split and check untrusted CBOR without allocating anything for its content: every
 * length is checked against the bytes actually left, nesting and item counts are bounded.
 * @param bytes the input
 * @param sequence true for an RFC 8742 sequence (many items), false for exactly one item
 * @param limits bounds
 * @returns the [start, end) byte ranges of the top-level items
 * @throws CborError naming the byte offset
 */
export function scanCbor(bytes: Uint8Array, sequence: boolean, limits: CborLimits = DEFAULT_CBOR_LIMITS): [number, number][] {
  const s: _Scan = { b: bytes, pos: 0, items: 0, limits };
  const ranges: [number, number][] = [];
  if (bytes.length === 0) _fail(s, "empty body");
  while (s.pos < bytes.length) {
    const start = s.pos;
    _item(s, 0);
    ranges.push([start, s.pos]);
    if (!sequence && s.pos < bytes.length) {
      _fail(s, `${bytes.length - s.pos} trailing bytes after the item (send application/cbor-seq for many readings)`);
    }
  }
  return ranges;
}

/**
 * Decode CBOR that already passed {@link scanCbor} (or comes from our own stream), into the data
 * model of `cbor_data.ts`.
 * @param bytes exactly one data item
 * @throws CborError (a duplicate map key is found only here)
 */
export function decodeCbor(bytes: Uint8Array): unknown {
  return cborDecode(bytes);
}

/**
 * Encode a value as CBOR: what {@link decodeCbor} gave goes back out as it came in.
 * @returns a Uint8Array that owns its memory
 */
export function encodeCbor(value: unknown): Uint8Array {
  return cborEncode(value);
}
