/**
 * Data-only schemas described in the isolate and rebuilt in the host: the rebuilt schema answers
 * exactly as the original, and anything that is not data (functions, regexes, tampered plans)
 * is refused, so the schema stays in the isolate.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as v from "valibot";
import { collectIssues, compilePlan, describeSchema } from "../../src/schemas/plan.ts";

const SCHEMAS: Record<string, v.GenericSchema> = {
  reading: v.object({ sensor: v.string(), celsius: v.number(), humidity: v.number(), at: v.number() }),
  bounds: v.object({
    t: v.pipe(v.number(), v.minValue(-40, "too cold"), v.maxValue(125), v.finite()),
    n: v.pipe(v.number(), v.integer(), v.safeInteger()),
    id: v.pipe(v.string(), v.minLength(2), v.maxLength(8, "id too long"), v.length(4)),
  }),
  optional: v.object({ a: v.optional(v.number(), 5), b: v.nullish(v.string()), c: v.nullable(v.boolean(), false) }),
  kinds: v.strictObject({ kind: v.picklist(["temp", "hum"], "unknown kind"), v: v.literal(1), tags: v.array(v.string()), more: v.looseObject({ x: v.bigint() }) }),
  any: v.object({ raw: v.unknown(), meta: v.any(), nothing: v.null() }),
};
const READINGS: unknown[] = [
  { sensor: "s1", celsius: 21.5, humidity: 40, at: 1 },
  { sensor: 3, celsius: "hot", at: null },
  { t: -41, n: 1.5, id: "abcdefghij" },
  { t: Infinity, n: 2 ** 60, id: "abcd" },
  { t: 20, n: 3, id: "abc" },
  { a: "x", b: null, c: undefined },
  {},
  { kind: "wind", v: 2, tags: ["a", 3], more: { x: 1n, y: 2 }, extra: true },
  { kind: "temp", v: 1, tags: [], more: { x: 2n } },
  { raw: { deep: [1] }, meta: 1, nothing: 0 },
  "not an object",
  null,
  [1, 2],
];

test("each data-only schema rebuilt from its plan gives the same issues as the original, reading by reading", async () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    const plan = describeSchema(schema);
    assert.ok(plan, `${name} is data only`);
    // The plan crosses a structured clone on the way to the host.
    const check = compilePlan(structuredClone(plan));
    assert.ok(check, `${name}'s plan builds`);
    const original = await collectIssues([(r) => schema["~standard"].validate(r)], READINGS);
    assert.deepEqual(await collectIssues([check], READINGS), original, name);
    assert.ok(original.length > 0, `${name}: the readings include bad ones`);
  }
});

test("a schema with a function, a regex, an async part or a computed default is not data only", () => {
  const refused: Record<string, unknown> = {
    check: v.pipe(v.number(), v.check((x) => x > 0)),
    transform: v.pipe(v.string(), v.transform((s) => s.length)),
    regex: v.object({ id: v.pipe(v.string(), v.regex(/^(a+)+$/)) }),
    messageFunction: v.number(() => "computed"),
    computedDefault: v.optional(v.number(), () => Date.now()),
    custom: v.custom<number>((x) => typeof x === "number"),
    async: v.objectAsync({ a: v.number() }),
    union: v.union([v.number(), v.string()]),
    notValibot: { kind: "schema", type: "number", async: false, "~standard": { vendor: "zod" } },
    deep: Array.from({ length: 40 }).reduce<v.GenericSchema>((s) => v.object({ s }), v.number()),
  };
  for (const [name, schema] of Object.entries(refused)) assert.equal(describeSchema(schema), undefined, name);
});

test("a tampered plan builds nothing: unknown kinds and actions, wrong requirement types, non-string messages", () => {
  const bad: unknown[] = [
    { t: "regex" },
    { t: "number", pipe: [{ t: "regex", requirement: "(a+)+$" }] },
    { t: "number", pipe: [{ t: "min_value", requirement: "1" }] },
    { t: "number", message: { toString: 1 } },
    { t: "object", entries: { a: { t: "custom" } } },
    { t: "object", entries: [] },
    { t: "picklist", options: [{}] },
    { t: "optional", wrapped: { t: "number" }, default: { evil: true } },
    null,
    "number",
  ];
  for (const p of bad) assert.equal(compilePlan(p), undefined, JSON.stringify(p));
});
