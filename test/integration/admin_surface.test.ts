/**
 * The admin surface, tried from the network as an attacker would: every route but ingest,
 * /healthz and /readyz needs a token (the read-only one only reads), no CORS headers for a page on
 * another origin, a Host check against DNS rebinding, errors without paths or stacks, secrets from
 * files with a warning for the command line, and an audit line for every admin action.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { writeFile } from "node:fs/promises";
import { join, RUNTIMES, startHost, startNats, tempDir } from "../_harness.ts";

const H = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "adm", async handle() {} });
`;

/** A raw HTTP request with a chosen Host header (fetch does not let a caller set Host). */
function rawGet(url: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: u.port, path, method: "GET", headers }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

for (const runtime of RUNTIMES) {
  test(`on ${runtime}: tokens guard every admin route, the read-only token only reads, no CORS, Host checked, audit lines`, async () => {
    const nats = await startNats();
    const dir = await tempDir("outpost-secrets-");
    await writeFile(join(dir, "admin"), "adm-secret-1\n");
    await writeFile(join(dir, "read"), "read-secret-1\n");
    const host = await startHost({ runtime, nats: nats.url, workers: { "adm.ts": H }, args: ["--admin-token-file", join(dir, "admin"), "--read-token-file", join(dir, "read"), "--allowed-hosts", "gateway.plant.example"] });
    try {
      const get = (path: string, token?: string, init: RequestInit = {}) =>
        fetch(`${host.url}${path}`, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers as Record<string, string> | undefined) } });
      for (const path of ["/v1/handlers", "/metrics", "/v1/dlq", "/v1/bundles"]) {
        const none = await get(path);
        assert.equal(none.status, 401, path);
        const body = await none.text();
        assert.doesNotMatch(body, /\/tmp\/|\/work\/|at [\w.]+ \(/, `${path}: no paths or stacks to a stranger`);
        assert.equal((await get(path, "adm-secret-1")).status, 200, path);
      }
      // The read-only token reads handlers and metrics, and nothing else.
      assert.equal((await get("/v1/handlers", "read-secret-1")).status, 200);
      assert.equal((await get("/metrics", "read-secret-1")).status, 200);
      assert.equal((await get("/v1/dlq", "read-secret-1")).status, 401);
      assert.equal((await get("/v1/dlq/replay?handler=adm", "read-secret-1", { method: "POST" })).status, 401);
      // Health stays open, and says nothing about files.
      assert.equal((await get("/healthz")).status, 200);
      assert.equal((await get("/readyz")).status, 200);

      // No CORS: a page on another origin gets no Access-Control-* answer, preflight or not.
      const pre = await get("/v1/handlers", undefined, { method: "OPTIONS", headers: { origin: "http://evil.example", "access-control-request-method": "GET" } });
      assert.equal(pre.headers.get("access-control-allow-origin"), null);
      const simple = await get("/v1/handlers", "adm-secret-1", { headers: { origin: "http://evil.example" } });
      assert.equal(simple.headers.get("access-control-allow-origin"), null);
      assert.equal(simple.headers.get("access-control-allow-credentials"), null);

      // DNS rebinding: the attacker's name in Host is refused on every route; this host's names pass.
      const rebound = await rawGet(host.url, "/healthz", { host: "attacker.example:8080" });
      assert.equal(rebound.status, 403);
      assert.equal(JSON.parse(rebound.body).error, "host_not_allowed");
      assert.equal((await rawGet(host.url, "/healthz", { host: `localhost:${new URL(host.url).port}` })).status, 200);
      assert.equal((await rawGet(host.url, "/healthz", { host: "gateway.plant.example" })).status, 200);
      assert.equal((await rawGet(host.url, "/v1/ingest/adm", { host: "attacker.example" })).status, 403);

      // An admin action leaves an audit line; the token file kept the secret off the command line.
      assert.equal((await get("/v1/dlq/replay?handler=adm", "adm-secret-1", { method: "POST" })).status, 200);
      assert.match(host.logs(), /\[audit\] POST \/v1\/dlq\/replay\?handler=adm by the admin token → 200/);
      assert.doesNotMatch(host.logs(), /on the command line is visible/);
    } finally {
      await host.stop();
      await nats.stop();
    }
  });
}

test("a secret on the command line draws a warning naming the file flag", async () => {
  const nats = await startNats();
  const host = await startHost({ nats: nats.url, workers: { "adm.ts": H }, args: ["--admin-token", "argv-secret"] });
  try {
    assert.match(host.logs(), /WARN .*--admin-token on the command line is visible to every local user \(\/proc\/\d+\/cmdline\); use --admin-token-file, OUTPOST_ADMIN_TOKEN or --config/);
    assert.equal((await host.api("/v1/handlers")).status, 200);
  } finally {
    await host.stop();
    await nats.stop();
  }
});
