import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { VERSION } from "../../src/version.ts";

test("deno.json and package.json name the same version and entry points as the code", async () => {
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8"));
  const deno = JSON.parse(await readFile(new URL("../../deno.json", import.meta.url), "utf8"));
  assert.equal(pkg.version, VERSION);
  assert.equal(deno.version, VERSION);
  // JSR publishes the author's SDK from source; npm points at its built files, by the source condition too.
  assert.deepEqual(Object.keys(deno.exports), ["./handler", "./testing"]);
  for (const [entry, path] of Object.entries(deno.exports)) assert.equal(pkg.exports[entry].source, path, entry);
  assert.equal(pkg.name, "outpost");
  assert.equal(pkg.bin.outpost, "bin/outpost.js");
});
