import { CborError, decodeCbor, scanCbor, type CborLimits } from "../codec/cbor.ts";

/** Content types accepted by ingest. */
export const MEDIA_TYPES = { cbor: "application/cbor", cborSeq: "application/cbor-seq", json: "application/json" } as const;

/** A request body that cannot be decoded; `index` names the reading when known. */
export class MalformedBodyError extends Error {
  override name = "MalformedBodyError";
  readonly index: number | undefined;
  constructor(message: string, index?: number) {
    super(message);
    this.index = index;
  }
}

/** Decoded readings; for CBOR, each reading's own bytes too (stored unchanged). */
export interface Decoded {
  readings: unknown[];
  /** CBOR bytes per reading, when the body was CBOR. */
  raw: Uint8Array[] | undefined;
}

/**
 * Decode a body into readings.
 * @param mediaType one of {@link MEDIA_TYPES}
 * @throws MalformedBodyError
 */
export function decodeBody(mediaType: string, body: Uint8Array, limits: CborLimits): Decoded {
  if (mediaType === MEDIA_TYPES.json) {
    let v: unknown;
    try {
      v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
    } catch (e) {
      throw new MalformedBodyError(`Malformed JSON: ${(e as Error).message}`);
    }
    if (Array.isArray(v)) return { readings: v, raw: undefined };
    if (v !== null && typeof v === "object") return { readings: [v], raw: undefined };
    throw new MalformedBodyError("A JSON body must be a reading (an object) or an array of readings");
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
