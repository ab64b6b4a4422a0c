import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { bundles, makeBundle, makeKey, otaHandler } from "../_bundles.ts";
import { ingest, startHost, startNats, streamMessages, waitFor, type TestHost } from "../_harness.ts";

// Each installation step logs "bundle step: …" and, with OUTPOST_BUNDLE_STEP_DELAY_MS, pauses there:
// the host is killed with -9 during the pause. Active after restart: the pointer decides.
const STEPS: [string, RegExp, number][] = [
  ["upload", /bundle step: receiving upload/, 0],
  ["verify", /bundle step: received \d+ bytes/, 0],
  ["stage", /bundle step: .*: verified/, 0],
  ["switch", /bundle step: .*: staged in/, 0],
  ["pointer", /bundle step: .*: handlers switched/, 0],
  ["probation", /bundle step: .*: on probation/, 40],
];

async function post(host: TestHost, from: number, count: number): Promise<number[]> {
  const r = await ingest(host.url, "ota", JSON.stringify(Array.from({ length: count }, (_, i) => ({ n: from + i }))), "application/json");
  assert.equal(r.status, 202, JSON.stringify(r.json));
  return r.json.results.map((x: { seq: number }) => x.seq);
}

test("kill -9 at each installation step leaves exactly one consistent release active and loses no reading", async (t) => {
  const key = await makeKey();
  const bundle = await makeBundle({ release: 40, handlers: { "ota.ts": otaHandler("r40") }, keys: [key] });
  const args = ["--admin-token", "tok", "--trust", key.pubFile, "--probation-ms", "60000"];
  for (const [step, logLine, expected] of STEPS) {
    const nats = await startNats();
    let host = await startHost({ nats: nats.url, workers: { "ota.ts": otaHandler("workers") }, args, env: { OUTPOST_BUNDLE_STEP_DELAY_MS: "3000" } });
    try {
      const seqs = await post(host, 0, 5);
      let upload: Promise<unknown>;
      if (step === "upload") {
        // Half the bundle, then the sender stalls: the host dies mid-upload.
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(bundle.subarray(0, bundle.length >> 1));
          },
        });
        upload = fetch(`${host.url}/v1/bundles`, { method: "POST", body, headers: { authorization: "Bearer tok" }, duplex: "half" } as RequestInit).catch(() => {});
      } else {
        upload = fetch(`${host.url}/v1/bundles`, { method: "POST", body: bundle as BodyInit, headers: { authorization: "Bearer tok" } }).catch(() => {});
      }
      await waitFor(() => logLine.test(host.logs()), 15_000, `step ${step}`);
      seqs.push(...await post(host, 5, 5));
      // Let the readings posted during the step finish first: a message in flight at the kill would
      // only come back after the consumer's ack wait (timeout + 30 s).
      await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.ota")).length >= seqs.length, 10_000, "readings handled before the kill");
      host.proc.kill("SIGKILL");
      await host.exited;
      await upload;
      host = await startHost({ nats: nats.url, workersDir: host.workersDir, dataDir: host.dataDir, args });
      const v = await bundles(host.url);
      assert.equal(v.active.release, expected, `after a kill at ${step}`);
      assert.equal(v.staged, null);
      assert.equal(v.probation?.release ?? 0, step === "probation" ? 40 : 0);
      const releases = (await readdir(join(host.dataDir, "bundles", "releases")).catch(() => [] as string[])).sort();
      assert.deepEqual(releases, expected ? [String(expected)] : [], `no staging leftovers after ${step}`);
      seqs.push(...await post(host, 10, 5));
      const out = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.ota");
        const by = new Map(m.map((x) => [x.value.seq, x.value.v]));
        return seqs.every((s) => by.has(s)) ? by : undefined;
      }, 45_000, `every reading handled after a kill at ${step}`);
      const after = seqs.slice(10).map((s) => out.get(s));
      assert.deepEqual(after, Array(5).fill(expected ? "r40" : "workers"), `readings after restart at ${step} served by one release`);
      t.diagnostic(`kill -9 at ${step}: release ${expected || "--workers"} active after restart, ${seqs.length} readings all handled`);
    } finally {
      await host.stop();
      await nats.stop();
    }
  }
});
