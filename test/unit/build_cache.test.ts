/**
 * The build cache: a handler built once is not built again while its files are unchanged; a change
 * to the handler or to a file it imports builds it again.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buildHandler } from "../../src/bundler/bundle.ts";
import { tempDir } from "../_harness.ts";

const HANDLER = (v: number) => `import { defineHandler } from "outpost/handler";
import { factor } from "./lib.ts";
export default defineHandler({ topic: "c", async handle(r, ctx) { await ctx.publish("c", { v: ${v} * factor }); } });
`;

test("a handler built once comes from the cache until it or a file it imports changes", async () => {
  const dir = await tempDir("outpost-cache-src-");
  const out = await tempDir("outpost-cache-out-");
  const file = join(dir, "c.ts");
  await writeFile(join(dir, "lib.ts"), "export const factor = 2;\n");
  await writeFile(file, HANDLER(1));
  const t0 = performance.now();
  const first = await buildHandler(file, out);
  const t1 = performance.now();
  const again = await buildHandler(file, out);
  const t2 = performance.now();
  assert.equal(again.hash, first.hash);
  assert.equal(again.handlerUrl.href, first.handlerUrl.href);
  assert.deepEqual(again.inputs, first.inputs);
  assert.equal((await readdir(join(out, "cache"))).filter((f) => f.endsWith(".json")).length, 1);
  console.log(`first build ${Math.round(t1 - t0)} ms, from the cache ${Math.round(t2 - t1)} ms`);
  // The same size, a new time, other content: built again.
  await writeFile(file, HANDLER(3));
  const changed = await buildHandler(file, out);
  assert.notEqual(changed.hash, first.hash);
  // An imported file changes: built again, though the handler's own file did not.
  await writeFile(join(dir, "lib.ts"), "export const factor = 5;\n");
  const lib = await buildHandler(file, out);
  assert.notEqual(lib.hash, changed.hash);
  // Touched but unchanged: the content decides, so the cache still serves it.
  await utimes(join(dir, "lib.ts"), new Date(), new Date(Date.now() + 5_000));
  assert.equal((await buildHandler(file, out)).hash, lib.hash);
});

test("a build that fails is not kept", async () => {
  const dir = await tempDir("outpost-cache-src-");
  const out = await tempDir("outpost-cache-out-");
  const file = join(dir, "bad.ts");
  await writeFile(file, "export default {{;\n");
  await assert.rejects(buildHandler(file, out), /Cannot build handler bad\.ts/);
  await assert.rejects(buildHandler(file, out), /Cannot build handler bad\.ts/);
});
