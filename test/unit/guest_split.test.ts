/**
 * The wasm-tier guest in two parts: the prelude (bootstrap and SDK) a spare sandbox evaluates
 * ahead, and the handler's own part. A handler started from its part behaves as from the whole
 * guest; one whose part would not link keeps the whole guest.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { buildHandler } from "../../src/bundler/bundle.ts";
import { PRELUDE_EXPORTS, partLinks } from "../../src/bundler/guest_split.ts";
import { decodeCbor, encodeCbor } from "../../src/codec/cbor.ts";
import { WasmIsolate } from "../../src/sandbox/quickjs/isolate.ts";
import { spareCounts } from "../../src/sandbox/quickjs/spare.ts";
import type { BuiltHandler } from "../../src/bundler/bundle.ts";
import { tempDir, waitFor } from "../_harness.ts";

const HANDLER = `import { defineHandler, v, PermanentError, Tag } from "outpost/handler";
export default defineHandler({
  topic: "split", isolation: "wasm",
  schema: v.object({ n: v.pipe(v.number(), v.integer()), tag: v.optional(v.string()) }),
  async handle(r, ctx) {
    if (r.n < 0) throw new PermanentError("negative: " + r.n);
    await ctx.publish("split.out", { twice: r.n * 2, tagged: new Tag(32, "urn:x:" + (r.tag ?? "none")), attempt: ctx.attempt });
  },
});
`;

const NAMESPACE = `import * as sdk from "outpost/handler";
export default sdk.defineHandler({
  topic: "ns", isolation: "wasm", schema: sdk.v.object({ n: sdk.v.number() }),
  async handle(r, ctx) { await ctx.publish("ns.out", { n: r.n + 1 }); },
});
`;

type Out = { subject: string; value: unknown };

async function run(built: BuiltHandler, split: boolean, data: unknown[]): Promise<{ outs: Out[]; errors: string[] }> {
  const outs: Out[] = [];
  const iso = new WasmIsolate({
    name: built.name, url: built.handlerUrl, guestUrl: built.guestUrl, ...(split ? { guestSplit: built.guestSplit } : {}),
    onCall: async (_op, subject, bytes) => void outs.push({ subject, value: decodeCbor(bytes) }), onLog: () => {}, onCrash: () => {},
  });
  const info = await iso.start();
  assert.equal(info.isolation, "wasm");
  const errors: string[] = [];
  let seq = 1;
  for (const d of data) {
    await iso.invoke({ subject: `ingest.${info.topic}`, seq: seq++, attempt: 1, data: encodeCbor(d) }, 5_000).catch((e: Error & { permanent?: boolean }) => {
      errors.push(`${e.name}${e.permanent ? " (permanent)" : ""}: ${e.message}`);
    });
  }
  await iso.terminate();
  return { outs, errors };
}

test("a wasm-tier handler started from its part behaves as from the whole guest, and a spare serves the next start", async () => {
  const dir = await tempDir("outpost-split-src-");
  const out = await tempDir("outpost-split-out-");
  await writeFile(join(dir, "split.ts"), HANDLER);
  const built = await buildHandler(join(dir, "split.ts"), out);
  assert.ok(built.guestSplit, "the handler's guest is split");
  const part = await readFile(built.guestSplit.part, "utf8");
  const whole = (await stat(fileURLToPath(built.guestUrl))).size;
  assert.ok(part.length * 4 < whole, `the part (${part.length} B) is far smaller than the whole guest (${whole} B)`);
  assert.ok(partLinks(part));
  assert.ok(built.bundleFiles?.includes(built.guestSplit.part), "the part's frames are mapped to the source");

  const data = [{ n: 2, tag: "a" }, { n: -1 }, { n: 7 }];
  const a = await run(built, false, data);
  const b = await run(built, true, data);
  assert.deepEqual(b, a);
  assert.equal(b.outs.length, 2);
  assert.deepEqual((b.outs[0]!.value as { twice: number }).twice, 4);
  assert.deepEqual(b.errors, ["HandlerError (permanent): PermanentError: negative: -1"]);

  // Each start schedules a spare like it; once made, the next start takes it.
  const taken = spareCounts.taken;
  await waitFor(async () => (spareCounts.made > 0 ? true : undefined), 10_000, "a spare sandbox made");
  const c = await run(built, true, [{ n: 5 }]);
  assert.equal(spareCounts.taken, taken + 1, "the start took the spare");
  assert.deepEqual(c.outs.map((o) => (o.value as { twice: number }).twice), [10]);
});

test("a handler that reaches the SDK through a namespace keeps its whole guest and still runs", async () => {
  const dir = await tempDir("outpost-split-ns-");
  const out = await tempDir("outpost-split-ns-out-");
  await writeFile(join(dir, "ns.ts"), NAMESPACE);
  const built = await buildHandler(join(dir, "ns.ts"), out);
  assert.equal(built.guestSplit, undefined);
  const r = await run(built, true, [{ n: 1 }]);
  assert.deepEqual(r.outs, [{ subject: "ns.out", value: { n: 2 } }]);
});

test("the prelude exports the SDK's values but v, and the bootstrap; a part links only by those names", async () => {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const r = await esbuild.build({ entryPoints: [join(root, "src/sandbox/quickjs/prelude.ts")], bundle: true, write: false, format: "esm", platform: "neutral", metafile: true, outdir: "/tmp/x", logLevel: "silent" });
  const exported = Object.values(r.metafile.outputs)[0]!.exports.sort();
  assert.deepEqual(exported, [...PRELUDE_EXPORTS].sort());
  const sdk = Object.keys(await import("../../src/sdk/handler.ts")).filter((k) => k !== "v");
  assert.deepEqual([...sdk, "serveGuest"].sort(), [...PRELUDE_EXPORTS].sort());

  assert.equal(partLinks(`import{serveGuest as m}from"outpost-sdk:prelude";import{defineHandler as t,Tag}from"outpost-sdk:prelude";m(t({}));`), true);
  assert.equal(partLinks(`import*as s from"outpost-sdk:prelude";s.serveGuest(s.defineHandler({}));`), false);
  assert.equal(partLinks(`import{serveGuest,v}from"outpost-sdk:prelude";`), false);
  assert.equal(partLinks(`const x = 1;`), false);
});
