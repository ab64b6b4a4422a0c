import { test } from "node:test";
import assert from "node:assert/strict";
import { checkDefinition, handlerInfo } from "../src/handlers/definition.ts";
import { defineHandler, v } from "../src/handler.ts";
import { backoffDelay } from "../src/dispatch/backoff.ts";
import { isHandlerFile, subjectMatches } from "../src/handlers/registry.ts";

test("checkDefinition names every problem", () => {
  assert.deepEqual(checkDefinition(42), ["the default export must be defineHandler({...}), got number"]);
  const p = checkDefinition({ topic: "bad topic", schema: { parse() {} }, timeoutMs: -1, retry: { backoff: "linear" } });
  assert.deepEqual(p, [
    "`handle` must be a function",
    '`topic` must be dot-separated letters, digits, _ or -, got "bad topic"',
    '`schema` must be a valibot schema (use `v` from "outpost/handler")',
    "`timeoutMs` must be an integer from 1 to 3600000",
    '`retry.backoff` must be "exponential" or a non-empty list of delays in ms',
  ]);
  assert.deepEqual(checkDefinition({ topic: "a.b", schema: v.object({}), handle() {} }), []);
});

test("defineHandler throws TypeError for an invalid definition", () => {
  assert.throws(() => defineHandler({ handle() {} }), { name: "TypeError", message: "Invalid handler definition: `topic` (or `subjects`) is required" });
});

test("handlerInfo applies the documented defaults", () => {
  const info = handlerInfo({ topic: "t", handle() {} });
  assert.deepEqual(info, {
    topic: "t", subjects: ["ingest.t"], hasSchema: false, idField: undefined, timeoutMs: 30_000, concurrency: 1,
    memoryMb: 128, permissions: undefined, maxAttempts: 5, backoff: "exponential",
  });
  assert.deepEqual(handlerInfo({ subjects: ["a.*", "b.>"], handle() {} }).subjects, ["ingest.a.*", "ingest.b.>"]);
});

test("backoff: exponential doubles from 1 s to a 60 s cap; a list repeats its last delay", () => {
  assert.deepEqual([1, 2, 3, 7, 10].map((a) => backoffDelay("exponential", a)), [1000, 2000, 4000, 60000, 60000]);
  assert.deepEqual([1, 2, 3, 4].map((a) => backoffDelay([10, 50], a)), [10, 50, 50, 50]);
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
