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

/** A SenML pack of `n` records (a base name, base unit and base time, then one value each), as JSON or CBOR. */
export function senmlPack(n: number, format: "json" | "cbor"): Uint8Array {
  const records = Array.from({ length: n }, (_, i) => (i === 0
    ? { bn: "urn:dev:ow:10e2073a01080063:", bt: 1_732_345_678, bu: "Cel", n: "temp", v: 21.53 }
    : { n: "temp", t: i, v: 21.53 + i / 100 }));
  if (format === "json") return new TextEncoder().encode(JSON.stringify(records));
  // RFC 8428 §6 integer labels.
  const label: Record<string, number> = { bn: -2, bt: -3, bu: -4, n: 0, v: 2, t: 6 };
  return encodeCbor(records.map((r) => new Map(Object.entries(r).map(([k, v]) => [label[k]!, v]))));
}
