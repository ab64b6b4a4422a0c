/**
 * The devices are ARM: the single file on arm64, here under emulation. Bun's arm64 build and
 * Debian's arm64 nats-server run under qemu-aarch64-static (scripts/arm64-setup.sh puts them in
 * .arm64/; .ci/run runs it). The core scenario (CBOR ingest → handler → OUTBOX) with a worker-tier
 * and a wasm-tier handler, then a small bounded load; start time and readings/s are printed (and
 * reported in docs/handlers.md), never asserted.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, copyFile, writeFile } from "node:fs/promises";
import { encodeCbor } from "../../src/codec/cbor.ts";
import { embeddedJsm, ingest, join, ROOT, startHost, streamMessages, tempDir, waitFor, type TestNats } from "../_harness.ts";
import { coreScenario, ECHO_HANDLER } from "../_scenario.ts";

const QEMU = "/usr/bin/qemu-aarch64-static";
const SYSROOT = "/usr/aarch64-linux-gnu";
const BUN = join(ROOT, ".arm64/bun");
const NATS = join(ROOT, ".arm64/nats-server");
const ready = existsSync(QEMU) && existsSync(BUN) && existsSync(NATS);

const DOUBLE = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "double",
  isolation: "wasm",
  concurrency: 4,
  async handle(r, ctx) { await ctx.publish("double", { n: r.n, twice: r.n * 2, sandboxed: typeof process === "undefined" }); },
});
`;

// In CI the emulated runtime must be there (.ci/run installs it); elsewhere the test says how to get it.
test("arm64 under emulation: the single file alone on Bun's arm64 build with Debian's arm64 nats-server runs the core scenario and a wasm-tier handler",
  { skip: ready || process.env.CI ? false : "run bash scripts/arm64-setup.sh first (qemu-user-static, arm64 Bun and nats-server)" }, async () => {
  assert.ok(ready, `missing ${[QEMU, BUN, NATS].filter((p) => !existsSync(p)).join(", ")}: run bash scripts/arm64-setup.sh`);
  const dir = await tempDir("outpost-arm64-");
  const file = join(dir, "outpost.js");
  await copyFile(join(ROOT, "bundles/outpost.js"), file);
  // No binfmt_misc here: the host starts nats-server through a script that runs it under qemu.
  const wrapper = join(dir, "nats-server");
  await writeFile(wrapper, `#!/bin/sh\nexec ${QEMU} -L ${SYSROOT} ${NATS} "$@"\n`);
  await chmod(wrapper, 0o755);
  const t0 = performance.now();
  const host = await startHost({
    command: [QEMU, "-L", SYSROOT, BUN, file],
    workers: { "echo.mjs": ECHO_HANDLER, "double.mjs": DOUBLE },
    // qemu-user runs the host, but not the programs the host starts (no binfmt_misc here): the
    // nats-server gets a wrapper, and the handler process (a second Bun) is left out.
    args: ["--nats-server", wrapper, "--no-handler-process"],
    // Emulation is slow, more so while other tests run: the wasm tier's load budget (2 s) is raised.
    env: { OUTPOST_WASM_LOAD_MS: "30000" },
  });
  const startMs = performance.now() - t0;
  const { nc, jsm } = await embeddedJsm(host.dataDir);
  try {
    // Under emulation loading is slow: wait until both handlers run (the log says why if not).
    await waitFor(async () => {
      const { handlers } = await (await host.api("/v1/handlers")).json() as { handlers: { name: string; status: string }[] };
      return handlers.length === 2 && handlers.every((h) => h.status === "running");
    }, 120_000, `both handlers running\n${host.logs().slice(-3000)}`).catch((e: Error) => {
      throw new Error(`${e.message}\n${host.logs().slice(-3000)}`);
    });
    assert.match(host.logs(), /outpost on bun 1\.\d+\.\d+/);
    assert.match(host.logs(), /embedded nats-server 2\.9\.10 ready/);
    await coreScenario(host, { jsm } as TestNats);
    const n = 100;
    const t1 = performance.now();
    for (let i = 0; i < n; i += 4) {
      const batch = [0, 1, 2, 3].filter((k) => i + k < n).map((k) => ingest(host.url, "double", encodeCbor({ n: i + k }), "application/cbor"));
      for (const r of await Promise.all(batch)) assert.equal(r.status, 202);
    }
    const out = await waitFor(async () => {
      const m = await streamMessages(jsm, "OUTBOX", "out.double");
      return m.length >= n ? m : undefined;
    }, 120_000, `${n} wasm-tier outputs`);
    const rate = n / ((performance.now() - t1) / 1000);
    assert.deepEqual(out.map((m) => m.value.n).sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
    assert.ok(out.every((m) => m.value.twice === m.value.n * 2 && m.value.sandboxed === true));
    const view = (await (await host.api("/v1/handlers")).json()).handlers.find((h: { name: string }) => h.name === "double");
    assert.equal(view.isolation, "wasm");
    console.log(`arm64 under qemu: start to listening ${Math.round(startMs)} ms; ${n} CBOR readings through a wasm-tier handler at ${rate.toFixed(0)} readings/s`);
  } finally {
    await nc.close();
    await host.stop();
  }
});
