/**
 * The valibot schema of one resolved SenML record (RFC 8428 §4.6), as `resolveSenml` returns it.
 * @module
 */
import * as v from "valibot";
import type { SenmlResolved } from "../codec/senml.ts";

// §4.5.1: a letter or digit, then letters, digits and - : . / _
const _name = v.pipe(
  v.string(),
  v.minLength(1, "A SenML name is not empty"),
  v.regex(/^[A-Za-z0-9][-:./_A-Za-z0-9]*$/, "A SenML name starts with a letter or digit, then holds only letters, digits and - : . / _"),
);
const _number = v.pipe(v.number(), v.finite());
const _fields = {
  n: _name,
  // Resolved times are absolute: 2**28 s and later (§4.5.3).
  t: v.pipe(_number, v.minValue(2 ** 28, "A resolved SenML time is absolute epoch seconds (2**28 or later)")),
  u: v.exactOptional(v.string()),
  s: v.exactOptional(_number),
  ut: v.exactOptional(_number),
  // Present only for a version other than 10 (§4.6); versions newer than 10 are refused.
  bver: v.exactOptional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(9))),
};
const _VALUE_LABELS = ["v", "vs", "vb", "vd"] as const;

/**
 * One resolved SenML record: `n`, absolute `t`, optional `u`, exactly one of `v`, `vs`, `vb`, `vd`
 * (or none when it carries a sum `s`), optional `s` and `ut`.
 * @example
 * ```ts
 * v.parse(SenmlRecord, { n: "urn:dev:ow:10e2073a01080063", t: 1.276020076e9, u: "Cel", v: 23.1 });
 * ```
 */
const _record = v.pipe(
  v.looseObject({}),
  v.check(
    (r) => _VALUE_LABELS.filter((l) => r[l] !== undefined).length <= 1,
    'A SenML record holds one value: one of "v", "vs", "vb" or "vd"',
  ),
  v.union([
    v.strictObject({ ..._fields, v: _number }),
    v.strictObject({ ..._fields, vs: v.string() }),
    v.strictObject({ ..._fields, vb: v.boolean() }),
    v.strictObject({ ..._fields, vd: v.instance(Uint8Array) }),
    v.strictObject({ ..._fields, s: _number }),
  ]),
);

/**
 * One resolved SenML record, as a handler reads it: the resolver's own type. One flat type rather
 * than the schema's union of five, so `record.v` needs no narrowing (it is `undefined` in a
 * string record).
 */
export type SenmlRecord = SenmlResolved;
/** The schema of one resolved record: valibot's own checks, typed as the flat {@link SenmlRecord}. */
export const SenmlRecord = _record as unknown as v.GenericSchema<SenmlRecord, SenmlRecord>;
