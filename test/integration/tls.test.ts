/**
 * HTTPS on Node, Deno and Bun: a certificate from `outpost tls self-signed`, a rotation picked up
 * without a restart, and (Node) a TLS client certificate naming the sensor. Clients here are
 * node:https and node:tls with the certificate as their only trust anchor.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, rename, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { connect as tlsConnect } from "node:tls";
import { join, outpost, RUNTIMES, startHost, startNats, streamMessages, tempDir, waitFor } from "../_harness.ts";

const H = `import { defineHandler, v } from "outpost/handler";
export default defineHandler({ topic: "sec", schema: v.object({ n: v.number() }), async handle(r, ctx) { await ctx.publish("sec", { n: r.n, sensor: ctx.sensor ?? null }); } });
`;

function httpsRequest(port: number, path: string, o: { ca: string; method?: string; body?: string; key?: string; cert?: string; headers?: Record<string, string> }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: o.method ?? "GET", ca: o.ca, servername: "localhost", key: o.key, cert: o.cert, headers: { "content-type": "application/json", ...o.headers }, agent: false }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end(o.body);
  });
}

function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.destroy();
    });
    s.on("error", reject);
  });
}

async function selfSigned(dir: string, name: string): Promise<{ cert: string; key: string; pem: string; fingerprint: string }> {
  const r = await outpost(["tls", "self-signed", "--out", dir, "--name", name]);
  assert.equal(r.code, 0, r.out);
  const pem = await readFile(join(dir, "cert.pem"), "utf8");
  return { cert: join(dir, "cert.pem"), key: join(dir, "key.pem"), pem, fingerprint: /SHA-256 (\S+)/.exec(r.out)![1]! };
}

for (const runtime of RUNTIMES) {
  test(`HTTPS on ${runtime}: readings over TLS, and a rotated certificate served without a restart`, async () => {
    const nats = await startNats();
    const live = await tempDir("outpost-tls-");
    const a = await selfSigned(live, "gw-a.test");
    const host = await startHost({ runtime, nats: nats.url, workers: { "sec.ts": H }, args: ["--tls-cert", a.cert, "--tls-key", a.key] });
    const port = Number(new URL(host.url).port);
    try {
      assert.match(host.logs(), /HTTPS with CN=gw-a\.test, valid to/);
      assert.match(host.logs(), /POST readings to https:\/\/127\.0\.0\.1:\d+\/v1\/ingest/);
      assert.equal((await httpsRequest(port, "/healthz", { ca: a.pem })).status, 200);
      const r = await httpsRequest(port, "/v1/ingest/sec", { ca: a.pem, method: "POST", body: JSON.stringify({ n: 1 }) });
      assert.equal(r.status, 202, r.body);
      await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.sec")).length === 1, 20_000, "the TLS reading handled");
      assert.equal(await servedFingerprint(port, a.pem), a.fingerprint);
      // Plain HTTP on the HTTPS port gets nowhere.
      await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`).then((x) => x.text().then((t) => (x.status === 200 && t.includes("ok") ? Promise.resolve() : Promise.reject(new Error(`status ${x.status}`))))));

      const oldKey = await readFile(a.key, "utf8");
      // Rotation: a new pair, renamed over the old files.
      const next = await selfSigned(await tempDir("outpost-tls-next-"), "gw-b.test");
      await rename(next.key, join(live, "key.pem"));
      await rename(next.cert, join(live, "cert.pem"));
      await waitFor(() => /TLS certificate reloaded: CN=gw-b\.test/.test(host.logs()), 15_000, "the reload");
      const fp = await waitFor(async () => {
        const f = await servedFingerprint(port, next.pem).catch(() => undefined);
        return f === next.fingerprint ? f : undefined;
      }, 10_000, "the new certificate served");
      assert.equal(fp, next.fingerprint);
      assert.equal((await httpsRequest(port, "/v1/ingest/sec", { ca: next.pem, method: "POST", body: JSON.stringify({ n: 2 }) })).status, 202);
      // A broken pair (a key that is not the certificate's) is refused; the one in use stays.
      await writeFile(join(live, "key.pem"), oldKey);
      await waitFor(() => /TLS certificate not reloaded/.test(host.logs()), 15_000, "the refusal");
      assert.equal(await servedFingerprint(port, next.pem), next.fingerprint);
    } finally {
      await host.stop();
      await nats.stop();
    }
  });
}

test("HTTPS on node: a client certificate chaining to --tls-client-ca names the sensor; without it, 401", async () => {
  const nats = await startNats();
  const dir = await tempDir("outpost-mtls-");
  const server = await selfSigned(dir, "gw.test");
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=plant CA");
  ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "meter.key", "-out", "meter.csr", "-subj", "/CN=meter-1");
  ssl("x509", "-req", "-in", "meter.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "meter.pem", "-days", "2");
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2", "-subj", "/CN=meter-1");
  const dataDir = await tempDir("outpost-mtls-data-");
  const added = await outpost(["sensors", "add", "meter-1", "--topics", "sec", "--client-cert", "--data-dir", dataDir]);
  assert.equal(added.code, 0, added.out);
  const host = await startHost({ nats: nats.url, dataDir, workers: { "sec.ts": H }, args: ["--tls-cert", server.cert, "--tls-key", server.key, "--tls-client-ca", join(dir, "ca.pem")] });
  const port = Number(new URL(host.url).port);
  try {
    const read = (f: string) => readFile(join(dir, f), "utf8");
    const body = JSON.stringify({ n: 9 });
    const ok = await httpsRequest(port, "/v1/ingest/sec", { ca: server.pem, method: "POST", body, key: await read("meter.key"), cert: await read("meter.pem") });
    assert.equal(ok.status, 202, ok.body);
    const [m] = await waitFor(async () => {
      const out = await streamMessages(nats.jsm, "OUTBOX", "out.sec");
      return out.length ? out : undefined;
    }, 20_000, "the reading of meter-1");
    assert.deepEqual(m!.value, { n: 9, sensor: "meter-1" });
    const none = await httpsRequest(port, "/v1/ingest/sec", { ca: server.pem, method: "POST", body });
    assert.equal(none.status, 401);
    // Same CN, not signed by the plant CA: no identity.
    const rogue = await httpsRequest(port, "/v1/ingest/sec", { ca: server.pem, method: "POST", body, key: await read("rogue.key"), cert: await read("rogue.pem") });
    assert.equal(rogue.status, 401);
  } finally {
    await host.stop();
    await nats.stop();
  }
});
