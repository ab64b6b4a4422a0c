import { test } from "node:test";
import assert from "node:assert/strict";
import { checkDefinition, handlerInfo } from "../../src/sdk/definition.ts";
import { defineHandler, v } from "../../src/sdk/handler.ts";
import { backoffDelay } from "../../src/dispatch/backoff.ts";
import { isHandlerFile } from "../../src/bundler/handler_files.ts";
import { subjectMatches } from "../../src/broker/subjects.ts";

test("checkDefinition names every problem", () => {
  assert.deepEqual(checkDefinition(42), ["the default export must be defineHandler({...}), got number"]);
  const p = checkDefinition({ topic: "bad topic", schema: { parse() {} }, timeoutMs: -1, retry: { backoff: "linear" } });
  assert.deepEqual(p, [
    "`handle` must be a function",
    '`topic` must be dot-separated letters, digits, _ or -, got "bad topic"',
    '`schema` must be a valibot schema (use `v` from "outpost/handler")',
    "`timeoutMs` must be an integer from 1 to 3600000",
    '`retry.backoff` must be "exponential", { type: "exponential", baseMs, maxMs } or a non-empty list of delays in ms',
  ]);
  assert.deepEqual(checkDefinition({ topic: "a.b", schema: v.object({}), handle() {} }), []);
});

test("defineHandler throws TypeError for an invalid definition", () => {
  assert.throws(() => defineHandler({ handle() {} }), { name: "TypeError", message: "Invalid handler definition: `topic` (or `subjects`) is required" });
});

test("handlerInfo applies the documented defaults", () => {
  const info = handlerInfo({ topic: "t", handle() {} });
  const { topic, subjects, hasSchema, idField, timeoutMs, concurrency, memoryMb, permissions, maxAttempts, backoff, jitter } = info;
  assert.deepEqual({ topic, subjects, hasSchema, idField, timeoutMs, concurrency, memoryMb, permissions, maxAttempts, backoff, jitter }, {
    topic: "t", subjects: ["ingest.t"], hasSchema: false, idField: undefined, timeoutMs: 30_000, concurrency: 1,
    memoryMb: 128, permissions: undefined, maxAttempts: 5, backoff: { baseMs: 1000, maxMs: 60000 }, jitter: 0.1,
  });
  assert.deepEqual(handlerInfo({ subjects: ["a.*", "b.>"], handle() {} }).subjects, ["ingest.a.*", "ingest.b.>"]);
});

test("backoff: exponential doubles from its base to its cap; a list repeats its last delay; jitter scales both", () => {
  const expo = handlerInfo({ topic: "t", handle() {} }).backoff;
  assert.deepEqual([1, 2, 3, 7, 10].map((a) => backoffDelay(expo, a)), [1000, 2000, 4000, 60000, 60000]);
  const own = handlerInfo({ topic: "t", retry: { backoff: { type: "exponential", baseMs: 10, maxMs: 35 } }, handle() {} }).backoff;
  assert.deepEqual([1, 2, 3, 4].map((a) => backoffDelay(own, a)), [10, 20, 35, 35]);
  assert.deepEqual([1, 2, 3, 4].map((a) => backoffDelay([10, 50], a)), [10, 50, 50, 50]);
  assert.equal(backoffDelay([1000], 1, 0.2, () => 0), 800);
  assert.equal(backoffDelay([1000], 1, 0.2, () => 0.999999), 1200);
  assert.deepEqual(checkDefinition({ topic: "t", retry: { jitter: 2 }, handle() {} }), ["`retry.jitter` must be a fraction from 0 to 1"]);
});

test("subject matching follows NATS wildcards", () => {
  assert.ok(subjectMatches("ingest.a", "ingest.a"));
  assert.ok(!subjectMatches("ingest.a", "ingest.a.b"));
  assert.ok(subjectMatches("ingest.*.x", "ingest.a.x"));
  assert.ok(subjectMatches("ingest.>", "ingest.a.b"));
  assert.ok(!subjectMatches("ingest.a.>", "ingest.a"));
});

test("helper modules and type declarations are not handlers", () => {
  assert.deepEqual(["a.ts", "_lib.ts", ".x.ts", "b.d.ts", "c.mjs", "d.json", "e.js"].filter(isHandlerFile), ["a.ts", "c.mjs", "e.js"]);
});

test("handler imports of `v` are rewritten to valibot itself, so bundles tree-shake it", async () => {
  const { directValibotImport } = await import("../../src/bundler/sdk_imports.ts");
  assert.equal(directValibotImport(`import { defineHandler, v } from "outpost/handler";`),
    `import { defineHandler } from "outpost/handler"; import * as v from "valibot";`);
  assert.equal(directValibotImport(`import { v as schema } from 'outpost/handler'`), `import * as schema from 'valibot';`);
  assert.equal(directValibotImport(`import {\n  defineHandler,\n  type Context,\n} from "outpost/handler";`),
    `import {\n  defineHandler,\n  type Context,\n} from "outpost/handler";`, "untouched without v");
  assert.equal(directValibotImport(`import { value } from "./v.ts";`), `import { value } from "./v.ts";`);
});
