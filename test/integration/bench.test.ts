/**
 * The benchmark harness cannot rot: `bench/run.ts --quick` runs against the real processes and
 * writes a results file with every section filled with numbers. Nothing here judges a speed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { ROOT, tempDir } from "../_harness.ts";

const _has = (cmd: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
const missing = ["wrk", "redis-server", "nats-server"].filter((c) => !_has(c));

test("bench --quick writes a results file and a chart with every section measured", { skip: missing.length ? `needs ${missing.join(", ")} (npm run bench installs them)` : false, timeout: 120_000 }, async () => {
  const out = await tempDir("outpost-bench-out-");
  try {
    const code = await new Promise<number | null>((res) => {
      const p = spawn(process.execPath, ["--import", "./test/_register.mjs", "bench/run.ts", "--quick", "--out", out], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
      p.once("exit", res);
    });
    assert.equal(code, 0);
    const files = await readdir(out);
    const json = files.find((f) => f.endsWith("-node.json"));
    assert.ok(json, `no results JSON in ${files.join(", ")}`);
    assert.ok(files.some((f) => f.endsWith("-node.svg")));
    const svg = await readFile(join(out, json.replace(/\.json$/, ".svg")), "utf8");
    assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const r = JSON.parse(await readFile(join(out, json), "utf8"));
    const node = r.runtimes.node;
    const numbers: [string, unknown][] = [
      ["ceilings.publishPerSec", node.ceilings.publishPerSec],
      ["ceilings.httpPerSec", node.ceilings.httpPerSec],
      ["ceilings.pubsubPerSec", node.ceilings.pubsubPerSec],
      ...["single", "cborBatch", "jsonBatch", "senmlJson", "senmlCbor"].flatMap((k): [string, unknown][] => [
        [`ingest.${k}.readingsPerSec`, node.ingest[k].readingsPerSec],
        [`ingest.${k}.ratio`, node.ingest[k].ratio],
      ]),
      ["ceilings.additivePerSec", node.ceilings.additivePerSec],
      ["ingest.single.ratioAdditive", node.ingest.single.ratioAdditive],
      ["relay.medianRatio", node.relay.medianRatio],
      ["mqtt.storedPerSec", node.mqtt.storedPerSec],
      ["mqtt.ratioToHttp", node.mqtt.ratioToHttp],
      ["endToEnd.sustainedPerSec", node.endToEnd.sustainedPerSec],
      ["endToEnd.ratio", node.endToEnd.ratio],
      ["endToEnd.latency.p50", node.endToEnd.latency.p50],
      ["endToEnd.latency.p99", node.endToEnd.latency.p99],
      ["endToEnd.latency.p999", node.endToEnd.latency.p999],
      ["endToEnd.latency.acceptedP99", node.endToEnd.latency.acceptedP99],
      ["endToEnd.latencyFloor.p99", node.endToEnd.latencyFloor?.p99],
      ["endToEnd.latencyRelay.p99", node.endToEnd.latencyRelay?.p99],
      ["endToEnd.latencyHalfCpu.p99", node.endToEnd.latencyHalfCpu?.p99],
      ["endToEnd.latencyHalfCpu.ratePerSec", node.endToEnd.latencyHalfCpu?.ratePerSec],
      // CPU per reading of each process during the open loop (Linux /proc): what sets the p99.
      ["endToEnd.latencyCpu.mainUs", node.endToEnd.latencyCpu?.mainUs],
      ["endToEnd.latencyCpu.natsUs", node.endToEnd.latencyCpu?.natsUs],
      ["endToEnd.latencyCpu.busy", node.endToEnd.latencyCpu?.busy],
      ["isolation.worker.coldStartMs.median", node.isolation.worker.coldStartMs.median],
      ["isolation.worker.overheadUs", node.isolation.worker.overheadUs],
      ["footprint.hostRssIdleMb", node.footprint.hostRssIdleMb],
      ["footprint.hostRssLoadMb", node.footprint.hostRssLoadMb],
      ["footprint.natsRssIdleMb", node.footprint.natsRssIdleMb],
      ["footprint.bundleBytes", node.footprint.bundleBytes],
      ["bullmq.enqueuePerSec", r.bullmq.enqueuePerSec],
      ["bullmq.drainPerSec", r.bullmq.drainPerSec],
      ["bullmq.pipeline.sustainedPerSec", r.bullmq.pipeline.sustainedPerSec],
    ];
    for (const [name, v] of numbers) assert.ok(typeof v === "number" && Number.isFinite(v) && (v > 0 || name.endsWith("overheadUs")), `${name} is ${v}`);
    for (const [k, v] of [
      ["isolation.tiers.wasm.coldStartMs", node.isolation.tiers.wasm.coldStartMs],
      ["isolation.tiers.wasm.coldStartBackToBackMs", node.isolation.tiers.wasm.coldStartBackToBackMs],
      ["isolation.tiers.wasm.perMessageUs", node.isolation.tiers.wasm.perMessageUs],
      ["isolation.tiers.wasm.rssPerIsolateBytes", node.isolation.tiers.wasm.rssPerIsolateBytes],
      ["isolation.dropIn.coldStartMs.median", node.isolation.dropIn.coldStartMs.median],
      ["isolation.dropIn.swapPauseMs.median", node.isolation.dropIn.swapPauseMs.median],
    ] as const) assert.ok(Number.isFinite(v), `${k} is a number (${v})`);
    assert.ok(node.targets.length >= 7 && node.targets.every((t: { met: unknown }) => typeof t.met === "boolean"));
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
