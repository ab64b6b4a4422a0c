import { encodeCbor } from "../../src/codec/cbor.ts";

/** The reading every section sends (≈100 B as CBOR). */
export function reading(i: number): Record<string, string | number> {
  return { sensor: `gh-north-${String(i % 10_000).padStart(4, "0")}`, celsius: 21.53, humidity: 48.25, pressure: 1013.2, battery: 3.71, seq: i, at: 1_732_345_678_901 };
}

/** Handler schema matching {@link reading}, as handler source text. */
export const READING_SCHEMA_SRC =
  "v.object({ sensor: v.string(), celsius: v.number(), humidity: v.number(), pressure: v.number(), battery: v.number(), seq: v.number(), at: v.number() })";

/** One reading as CBOR. */
export function cborReading(i = 1): Uint8Array {
  return encodeCbor(reading(i));
}

/** `n` readings as a CBOR sequence (concatenated items). */
export function cborSeq(n: number): Uint8Array {
  const parts = Array.from({ length: n }, (_, i) => encodeCbor(reading(i)));
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** `n` readings as a JSON array. */
export function jsonArray(n: number): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(Array.from({ length: n }, (_, i) => reading(i))));
}
