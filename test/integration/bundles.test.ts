import { execFileSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { decodeCbor, encodeCbor } from "../../src/codec/cbor.ts";
import { describeFiles, signBundle, type Manifest } from "../../src/ota/manifest.ts";
import { verifyBundle } from "../../src/ota/verify.ts";
import { loadTrustStore } from "../../src/ota/trust.ts";
import { bundles, makeBundle, makeKey, otaHandler, push, type TestKey } from "../_bundles.ts";
import { ingest, startHost, startNats, streamMessages, waitFor, type TestHost, type TestNats, hostCommand } from "../_harness.ts";

async function handledBy(nats: TestNats, seqs: number[]): Promise<Map<number, string>> {
  const out = await waitFor(async () => {
    const m = await streamMessages(nats.jsm, "OUTBOX", "out.ota");
    const by = new Map<number, string>(m.map((x) => [x.value.seq, x.value.v]));
    return seqs.every((s) => by.has(s)) ? by : undefined;
  }, 30_000, `${seqs.length} readings handled`);
  return out;
}

async function post(host: TestHost, count: number): Promise<number[]> {
  const r = await ingest(host.url, "ota", JSON.stringify(Array.from({ length: count }, (_, n) => ({ n }))), "application/json");
  assert.equal(r.status, 202, JSON.stringify(r.json));
  return r.json.results.map((x: { seq: number }) => x.seq);
}

describe("OTA bundles (Node)", () => {
  let nats: TestNats;
  let host: TestHost;
  let dev: TestKey;
  let other: TestKey;
  before(async () => {
    nats = await startNats();
    [dev, other] = [await makeKey("dev"), await makeKey("other")];
    host = await startHost({
      nats: nats.url,
      workers: { "ota.ts": otaHandler("workers") },
      args: ["--admin-token", "tok", "--trust", dev.pubFile, "--max-bundle-size", "512K", "--probation-ms", "2500", "--probation-messages", "1000"],
    });
  });
  after(async () => {
    await host?.stop();
    await nats?.stop();
  });

  test("a signed bundle activates atomically, serves readings, and is committed after probation", async () => {
    const t0 = Date.now();
    const r = await push(host.url, await makeBundle({ release: 10, handlers: { "ota.ts": otaHandler("r10") }, keys: [dev] }));
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.deepEqual([r.json.release, r.json.status], [10, "probation"]);
    const seqs = await post(host, 5);
    const by = await handledBy(nats, seqs);
    assert.deepEqual(seqs.map((s) => by.get(s)), Array(5).fill("r10"));
    const v = await waitFor(async () => {
      const b = await bundles(host.url);
      return b.probation === null ? b : undefined;
    }, 10_000, "commit");
    assert.equal(v.active.release, 10);
    assert.equal(v.active.source, "bundle");
    assert.equal(v.previous.source, "workers");
    assert.deepEqual(v.active.signers, [dev.id]);
    await waitFor(() => /release 10 committed after probation/.test(host.logs()), 5_000, "the commit to be logged");
    console.log(`activation ${r.json.activationMs} ms, push to commit ${Date.now() - t0} ms`);
  });

  const refusals: [string, () => Promise<Uint8Array>, number, string, RegExp][] = [
    ["a tampered file", async () => {
      const b = decodeCbor(await makeBundle({ release: 20, handlers: { "ota.ts": otaHandler("evil") }, keys: [dev] })) as { files: Uint8Array[] };
      const f = b.files[0]!;
      f[10] = f[10]! ^ 1;
      return encodeCbor(b);
    }, 422, "bad_hash", /^Cannot activate bundle ota 1\.0\.20 \(release 20\): file ota\.mjs does not match its SHA-256 in the manifest$/],
    ["the wrong key", () => makeBundle({ release: 21, handlers: { "ota.ts": otaHandler("x") }, keys: [other] }),
      422, "bad_signature", /^Cannot activate bundle ota 1\.0\.21 \(release 21\): signature does not match any trusted key$/],
    ["an expired manifest", () => makeBundle({ release: 22, handlers: { "ota.ts": otaHandler("x") }, keys: [dev], now: Date.now() - 7_200_000 }),
      422, "expired", /^Cannot activate bundle ota 1\.0\.22 \(release 22\): manifest expired at /],
    ["an older release", () => makeBundle({ release: 9, handlers: { "ota.ts": otaHandler("old") }, keys: [dev] }),
      409, "stale_release", /^Cannot activate bundle ota 1\.0\.9 \(release 9\): release 9 is not above the active release 10/],
    ["a path escape", async () => {
      const data = new TextEncoder().encode("export default 1;");
      const m: Manifest = { name: "ota", version: "6.6.6", release: 23, created: Date.now(), expires: Date.now() + 60_000,
        target: { runtimes: ["node", "deno", "bun"], outpost: "0.1.0" }, files: await describeFiles([{ path: "../../evil.mjs", data }]) };
      return await signBundle(m, [data], [dev.signing]);
    }, 422, "bad_path", /^Cannot activate bundle ota 6\.6\.6 \(release 23\): file "\.\.\/\.\.\/evil\.mjs" escapes the release directory/],
    ["a link", async () => {
      const data = new TextEncoder().encode("/etc/passwd");
      const m = { name: "ota", version: "6.6.7", release: 24, created: Date.now(), expires: Date.now() + 60_000,
        target: { runtimes: ["node"], outpost: "0.1.0" }, files: [{ path: "x.mjs", type: "symlink", size: data.length, sha256: "00" }] };
      return await signBundle(m as unknown as Manifest, [data], [dev.signing]);
    }, 422, "bad_path", /file "x\.mjs" is a symlink: only plain files are allowed \(no links\)/],
    ["an oversized bundle", async () => {
      // 10 handlers with 60 KB of incompressible data each: well over the 512 KiB limit.
      const handlers: Record<string, string> = { "ota.ts": otaHandler("big") };
      for (let i = 0; i < 10; i++) {
        const pad = Buffer.from(crypto.getRandomValues(new Uint8Array(60_000))).toString("base64");
        handlers[`pad${i}.ts`] = otaHandler(`pad${i}`).replace('topic: "ota"', `topic: "pad${i}"`) +
          `\nexport const pad = ${JSON.stringify(pad)};\nif (pad.length === 0) throw new Error("never");\n`;
      }
      return await makeBundle({ release: 25, handlers, keys: [dev] });
    }, 413, "too_large", /^Cannot accept bundle: it is above the limit of 524288 bytes \(--max-bundle-size\)$/],
  ];
  for (const [what, make, status, code, message] of refusals) {
    test(`a bundle with ${what} is refused with a precise error; the active release is unchanged`, async () => {
      const before = await bundles(host.url);
      const r = await push(host.url, await make());
      assert.equal(r.status, status, JSON.stringify(r.json));
      assert.equal(r.json.error, code);
      assert.match(r.json.message, message);
      const after = await bundles(host.url);
      assert.deepEqual(after.active, before.active);
      const seqs = await post(host, 1);
      assert.equal((await handledBy(nats, seqs)).get(seqs[0]!), "r10");
    });
  }

  test("a release whose handler throws on every message rolls back by itself; the restored version handles every reading", async () => {
    const r = await push(host.url, await makeBundle({ release: 30, handlers: { "ota.ts": otaHandler("r30", { fail: true }) }, keys: [dev] }));
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const t0 = Date.now();
    const seqs = [...await post(host, 10), ...await post(host, 10)];
    const v = await waitFor(async () => {
      const b = await bundles(host.url);
      return b.lastRollback?.release === 30 ? b : undefined;
    }, 2_500, "the rollback within the probation window");
    const took = Date.now() - t0;
    assert.equal(v.active.release, 10);
    assert.equal(v.probation, null);
    const failed = v.failed.find((f: { release: number }) => f.release === 30);
    assert.match(failed.reason, /^\d+ of \d+ messages failed \(\d+ %\), above the 10 % threshold$/);
    assert.equal(v.lastRollback.release, 30);
    const by = await handledBy(nats, seqs);
    assert.deepEqual(seqs.map((s) => by.get(s)), Array(20).fill("r10"), "every reading handled by the restored release");
    assert.deepEqual(await streamMessages(nats.jsm, "DLQ", "dlq.ota"), [], "nothing dead-lettered");
    // The failed release is never taken again.
    const again = await push(host.url, await makeBundle({ release: 30, handlers: { "ota.ts": otaHandler("r30") }, keys: [dev] }));
    assert.equal(again.status, 409);
    assert.match(again.json.message, /release 30 already failed on this device/);
    console.log(`rollback detected and done ${took} ms after the first failing reading; rollback itself ${v.lastRollback.ms} ms`);
  });

  test("a release whose handler does not load is refused before anything switches", async () => {
    const r = await push(host.url, await makeBundle({ release: 31, handlers: { "ota.ts": otaHandler("r31"), "bad.ts": "throw new Error('no');\nexport default 1;\n" }, keys: [dev] }));
    assert.equal(r.status, 422);
    assert.equal(r.json.error, "activation_failed");
    assert.match(r.json.message, /^Cannot activate bundle ota 1\.0\.31 \(release 31\): handlers did not load: bad: Handler bad failed to load: Error: no$/);
    assert.equal((await bundles(host.url)).active.release, 10);
  });

  test("bundles use-directory serves the --workers directory again, said at the route, in /v1/handlers and in the log", async () => {
    const before = await (await host.api("/v1/handlers")).json();
    assert.deepEqual([before.source.kind, before.source.release], ["bundle", 10]);
    const [cmd, ...pre] = hostCommand("node");
    const out = execFileSync(cmd!, [...pre, "bundles", "use-directory", "--url", host.url, "--admin-token", "tok"]).toString();
    assert.equal(out, `the host serves its --workers directory again (${host.workersDir})\n`);
    const after = await (await host.api("/v1/handlers")).json();
    assert.deepEqual(after.source, { kind: "workers", release: 0, dir: host.workersDir });
    const seqs = await post(host, 3);
    const by = await handledBy(nats, seqs);
    assert.deepEqual(seqs.map((s) => by.get(s)), Array(3).fill("workers"));
    const v = await bundles(host.url);
    assert.equal(v.active.source, "workers");
    assert.equal(v.previous.release, 10);
    assert.match(host.logs(), /the --workers directory .* is served again; release 10 \(ota 1\.0\.10\) is kept as the previous one/);
  });

  test("routes need the admin token", async () => {
    assert.equal((await fetch(`${host.url}/v1/bundles`)).status, 401);
    assert.equal((await fetch(`${host.url}/v1/bundles`, { method: "POST", body: "x" })).status, 401);
  });
});

test("k of n: a bundle needs signatures from distinct trusted keys", async () => {
  const [a, b, c] = [await makeKey("a"), await makeKey("b"), await makeKey("c")];
  const trust = await loadTrustStore([a.pubFile, b.pubFile, c.pubFile], 2);
  const ctx = { trust, activeRelease: 0, failedReleases: [], maxBytes: 1 << 20, runtime: "node" };
  const one = await makeBundle({ release: 1, handlers: { "ota.ts": otaHandler("x") }, keys: [a] });
  await assert.rejects(verifyBundle(one, ctx), { name: "BundleSignatureError", message: /1 trusted signature\(s\), 2 required$/ });
  const twice = await makeBundle({ release: 1, handlers: { "ota.ts": otaHandler("x") }, keys: [a, a] });
  await assert.rejects(verifyBundle(twice, ctx), { name: "BundleSignatureError" });
  const two = await makeBundle({ release: 1, handlers: { "ota.ts": otaHandler("x") }, keys: [a, c] });
  assert.deepEqual((await verifyBundle(two, ctx)).signers.sort(), [a.id, c.id].sort());
});
