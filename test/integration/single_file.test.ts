import { coreScenario, ECHO_HANDLER as ECHO } from "../_scenario.ts";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { bundles, makeBundle, makeKey, otaHandler, push, type TestKey } from "../_bundles.ts";
import { ingest, ROOT, RUNTIMES, startHost, startNats, streamMessages, tempDir, waitFor, type Runtime, type TestHost, type TestNats } from "../_harness.ts";

const FLAKY = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "boom",
  retry: { maxAttempts: 3, backoff: [50, 100] },
  async handle(r, ctx) { throw new ctx.Permanent("boom " + r.n); },
});
`;

// The wasm tier from the file alone: its QuickJS engine is embedded in the single file.
const WASMY = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "wasmy",
  isolation: "wasm",
  retry: { maxAttempts: 1 },
  async handle(r, ctx) {
    if (r.n < 0) throw new Error("negative " + r.n);
    await ctx.publish("wasmy", { twice: r.n * 2, sandboxed: typeof process === "undefined" });
  },
});
`;

function singleFileCommand(rt: Runtime, file: string): string[] {
  switch (rt) {
    case "node":
      return [process.execPath, file];
    case "deno":
      return [join(ROOT, "node_modules/.bin/deno"), "run", "-A", file];
    case "bun":
      return [join(ROOT, "node_modules/.bin/bun"), file];
  }
}

let key: TestKey;
let release: Uint8Array;
let file: string;
before(async () => {
  // A directory with nothing but the single file: no node_modules, no src/.
  const dir = await tempDir("outpost-single-");
  file = join(dir, "outpost.js");
  await copyFile(join(ROOT, "bundles/outpost.js"), file);
  key = await makeKey();
  release = await makeBundle({ release: 7, handlers: { "ota.ts": otaHandler("r7") }, keys: [key] });
  console.log(`bundles/outpost.js: ${(await stat(file)).size} bytes`);
});

for (const runtime of RUNTIMES) {
  describe(`the single file bundles/outpost.js alone on ${runtime}`, () => {
    let nats: TestNats;
    let host: TestHost;
    before(async () => {
      nats = await startNats();
      host = await startHost({
        runtime,
        command: singleFileCommand(runtime, file),
        nats: nats.url,
        workers: { "echo.mjs": ECHO, "flaky.js": FLAKY, "wasmy.mjs": WASMY },
        args: ["--admin-token", "tok", "--trust", key.pubFile, "--probation-ms", "500"],
      });
    });
    after(async () => {
      await host?.stop();
      await nats?.stop();
    });

    test("CBOR, CBOR-seq and JSON readings reach the handler; its ctx.publish output is in OUTBOX", async () => {
      await coreScenario(host, nats);
      const bad = await ingest(host.url, "e2e", JSON.stringify({ n: "x" }), "application/json");
      assert.equal(bad.status, 400);
    });

    test("a failing handler's message lands in DLQ", async () => {
      assert.equal((await ingest(host.url, "boom", JSON.stringify({ n: 7 }), "application/json")).status, 202);
      const [dl] = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "DLQ", "dlq.flaky");
        return m.length ? m : undefined;
      }, 20_000, "a DLQ entry");
      assert.deepEqual([dl!.value.error.name, dl!.value.error.message], ["PermanentError", "boom 7"]);
    });

    test("a wasm-tier handler runs in QuickJS from the engine inside the file; its error names the author's file and line", async () => {
      assert.equal((await ingest(host.url, "wasmy", JSON.stringify({ n: 21 }), "application/json")).status, 202);
      const m = await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.wasmy"))[0], 20_000, "the wasm handler's output");
      assert.deepEqual(m.value, { twice: 42, sandboxed: true });
      const view = (await (await host.api("/v1/handlers")).json()).handlers.find((h: { name: string }) => h.name === "wasmy");
      assert.equal(view.isolation, "wasm");
      assert.equal((await ingest(host.url, "wasmy", JSON.stringify({ n: -1 }), "application/json")).status, 202);
      const [dl] = await waitFor(async () => {
        const d = await streamMessages(nats.jsm, "DLQ", "dlq.wasmy");
        return d.length ? d : undefined;
      }, 20_000, "the wasm handler's DLQ entry");
      assert.equal(dl!.value.error.message, "negative -1");
      assert.match(dl!.value.error.at, new RegExp(`${join(host.workersDir, "wasmy.mjs").replace(/[.]/g, "\\.")}:8:\\d+$`), dl!.value.error.stack);
    });

    test("a signed bundle (prebuilt by outpost pack) activates without esbuild on the device", async () => {
      const r = await push(host.url, release);
      assert.equal(r.status, 201, JSON.stringify(r.json));
      const ok = await ingest(host.url, "ota", JSON.stringify({ n: 1 }), "application/json");
      assert.equal(ok.status, 202);
      const m = await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.ota"))[0], 10_000, "the release's output");
      assert.equal(m.value.v, "r7");
      await waitFor(async () => (await bundles(host.url)).probation === null, 10_000, "commit");
      assert.equal((await bundles(host.url)).active.release, 7);
      // The release replaced --workers: e2e is no longer consumed.
      assert.equal((await ingest(host.url, "e2e", JSON.stringify({ n: 1 }), "application/json")).status, 404);
    });
  });
}
