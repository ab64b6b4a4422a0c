import { Decoder, Encoder } from "cbor-x";

/** Bounds applied to untrusted CBOR before cbor-x sees it. */
export interface CborLimits {
  /** Deepest nesting of arrays, maps and tags. */
  maxDepth: number;
  /** Most data items in one input (all readings of a sequence together). */
  maxItems: number;
}

/** Defaults for {@link CborLimits}. */
export const DEFAULT_CBOR_LIMITS: CborLimits = { maxDepth: 32, maxItems: 100_000 };

/** Raised for input that is not well-formed CBOR or exceeds a bound. */
export class CborError extends Error {
  override name = "CborError";
  /** Byte offset where the problem was found. */
  offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.offset = offset;
  }
}

// Tags cbor-x turns into plain values. Everything else (cbor-x's own record, shared-reference
// and constructor extensions among them) is refused before decoding.
const _ALLOWED_TAGS = new Set<number>([0, 1, 2, 3, 4, 5, 21, 22, 23, 24, 32, 33, 34, 36, 37, 55799]);
for (let t = 64; t <= 87; t++) if (t !== 76) _ALLOWED_TAGS.add(t);

const _options = { useRecords: false, mapsAsObjects: true, tagUint8Array: false } as const;
const _decoder = new Decoder(_options);
const _encoder = new Encoder(_options);

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
  const start = s.pos - 1;
  const arg = _arg(s, ai);
  const left = s.b.length - s.pos;
  switch (major) {
    case 0:
    case 1:
      return;
    case 2:
    case 3:
      if (arg > left) _fail(s, `string length ${arg} exceeds the ${left} bytes left`);
      s.pos += arg;
      return;
    case 4:
      if (arg > left) _fail(s, `array of ${arg} items cannot fit in the ${left} bytes left`);
      for (let i = 0; i < arg; i++) _item(s, depth + 1);
      return;
    case 5:
      if (arg * 2 > left) _fail(s, `map of ${arg} pairs cannot fit in the ${left} bytes left`);
      for (let i = 0; i < arg * 2; i++) _item(s, depth + 1);
      return;
    case 6:
      if (!_ALLOWED_TAGS.has(arg)) {
        s.pos = start;
        _fail(s, `unsupported tag ${arg}`);
      }
      return _item(s, depth + 1);
    default: // 7: simple values and floats; the argument bytes were consumed above
      if (ai === 24 && arg < 32) _fail(s, `invalid simple value ${arg}`);
      return;
  }
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
 * Decode CBOR that already passed {@link scanCbor} (or comes from our own stream).
 * @param bytes exactly one data item
 */
export function decodeCbor(bytes: Uint8Array): unknown {
  return _decoder.decode(bytes);
}

/**
 * Encode a value as CBOR (maps as objects, byte strings untagged, dates as tag 1).
 * @returns a Uint8Array that owns its memory (cbor-x returns a view of a buffer it reuses)
 */
export function encodeCbor(value: unknown): Uint8Array {
  return new Uint8Array(_encoder.encode(value));
}
