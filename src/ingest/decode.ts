import { CborError, decodeCbor, scanCbor, type CborLimits } from "../codec/cbor.ts";
import { resolveSenml, SenmlError } from "../codec/senml.ts";

export { SenmlError };

/** Content types accepted by ingest. */
export const MEDIA_TYPES = {
  cbor: "application/cbor",
  cborSeq: "application/cbor-seq",
  json: "application/json",
  senmlJson: "application/senml+json",
  senmlCbor: "application/senml+cbor",
} as const;

/** How a body is read beyond its media type. */
export interface DecodeOptions {
  /** SenML: one reading per resolved record (default), or the resolved pack as one reading. */
  senml?: "records" | "pack" | undefined;
  /** Epoch ms that relative SenML times count from (default: now). */
  now?: number | undefined;
}

/** A request body that cannot be decoded; `index` names the reading when known. */
export class MalformedBodyError extends Error {
  override name = "MalformedBodyError";
  readonly index: number | undefined;
  constructor(message: string, index?: number) {
    super(message);
    this.index = index;
  }
}

/**
 * The bounds CBOR readings get, for JSON ones: nesting depth (a reading is depth 0), data items
 * in the whole body, no `__proto__` key, no lone surrogate in a string (it has no UTF-8 form).
 */
function _checkJson(v: unknown, depth: number, index: number, walk: { items: number }, limits: CborLimits): void {
  if (depth > limits.maxDepth) throw new MalformedBodyError(`Malformed JSON in reading ${index}: nesting deeper than ${limits.maxDepth}`, index);
  if (++walk.items > limits.maxItems) throw new MalformedBodyError(`Malformed JSON: more than ${limits.maxItems} data items`, index);
  if (typeof v === "string") {
    if (!_wellFormed(v)) throw new MalformedBodyError(`Malformed JSON in reading ${index}: a string holds a lone surrogate (not valid Unicode)`, index);
    return;
  }
  if (v === null || typeof v !== "object") return;
  if (Array.isArray(v)) {
    for (const x of v) _checkJson(x, depth + 1, index, walk, limits);
    return;
  }
  for (const k in v) {
    if (k === "__proto__") throw new MalformedBodyError(`Malformed JSON in reading ${index}: the key "__proto__" is not accepted`, index);
    if (!_wellFormed(k)) throw new MalformedBodyError(`Malformed JSON in reading ${index}: a key holds a lone surrogate (not valid Unicode)`, index);
    _checkJson((v as Record<string, unknown>)[k], depth + 1, index, walk, limits);
  }
}

const _wellFormed: (s: string) => boolean = typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === "function"
  ? (s) => (s as string & { isWellFormed(): boolean }).isWellFormed()
  : (s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:[^\uD800-\uDBFF]|^)[\uDC00-\uDFFF]/.test(s);

/** Decoded readings; for CBOR, each reading's own bytes too (stored unchanged). */
export interface Decoded {
  readings: unknown[];
  /** CBOR bytes per reading, when the body was CBOR. */
  raw: Uint8Array[] | undefined;
}

function _parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (e) {
    throw new MalformedBodyError(`Malformed JSON: ${(e as Error).message}`);
  }
}

/**
 * Decode a body into readings.
 * @param mediaType one of {@link MEDIA_TYPES}
 * @throws MalformedBodyError, or SenmlError for a SenML pack that is well-formed but not valid SenML
 */
export function decodeBody(mediaType: string, body: Uint8Array, limits: CborLimits, opts: DecodeOptions = {}): Decoded {
  if (mediaType === MEDIA_TYPES.senmlJson || mediaType === MEDIA_TYPES.senmlCbor) return _senml(mediaType, body, limits, opts);
  if (mediaType === MEDIA_TYPES.json) {
    const v = _parseJson(body);
    let readings: unknown[];
    if (Array.isArray(v)) readings = v;
    else if (v !== null && typeof v === "object") readings = [v];
    else throw new MalformedBodyError("A JSON body must be a reading (an object) or an array of readings");
    const walk = { items: 0 };
    readings.forEach((r, i) => _checkJson(r, 0, i, walk, limits));
    return { readings, raw: undefined };
  }
  let ranges: [number, number][];
  try {
    ranges = scanCbor(body, mediaType === MEDIA_TYPES.cborSeq, limits);
  } catch (e) {
    if (e instanceof CborError) throw new MalformedBodyError(e.message);
    throw e;
  }
  const raw = ranges.map(([s, e]) => body.subarray(s, e));
  const readings = raw.map((bytes, i) => {
    try {
      return decodeCbor(bytes);
    } catch (e) {
      throw new MalformedBodyError(`Malformed CBOR in reading ${i}: ${(e as Error).message}`, i);
    }
  });
  return { readings, raw };
}

/** A SenML pack, bounded as any reading is, then resolved (RFC 8428 §4.6). */
function _senml(mediaType: string, body: Uint8Array, limits: CborLimits, opts: DecodeOptions): Decoded {
  let pack: unknown;
  if (mediaType === MEDIA_TYPES.senmlJson) {
    pack = _parseJson(body);
    _checkJson(pack, 0, 0, { items: 0 }, limits);
  } else {
    try {
      scanCbor(body, false, limits);
      pack = decodeCbor(body);
    } catch (e) {
      if (e instanceof CborError) throw new MalformedBodyError(e.message);
      throw e;
    }
  }
  const records = resolveSenml(pack, { now: (opts.now ?? Date.now()) / 1000, format: mediaType === MEDIA_TYPES.senmlJson ? "json" : "cbor" });
  return { readings: opts.senml === "pack" ? [records] : records, raw: undefined };
}
