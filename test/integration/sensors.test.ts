/**
 * Who may post what: the sensor registry at ingest, on Node (the single file), Deno and Bun.
 * Tokens and HMAC-signed requests, 401/403/429 with nothing stored, the sensor id in the stored
 * reading and as ctx.sensor in both tiers, ids scoped per sensor, header permissions, and a
 * revoke that takes effect without a restart. The HMAC signatures here are made with node:crypto,
 * not with the host's WebCrypto code.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { ingest, lastSeq, outpost, RUNTIMES, startHost, startNats, storesNothing, streamMessages, tempDir, waitFor, type TestHost, type TestNats } from "../_harness.ts";

const handler = (topic: string, tier: string) => `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "${topic}",
  isolation: "${tier}",
  schema: v.object({ n: v.number() }),
  priority: true,
  async handle(r, ctx) { await ctx.publish("${topic}", { n: r.n, sensor: ctx.sensor ?? null }); },
});
`;

/** `outpost sensors add …` into a data directory; returns the credential lines it printed once. */
async function addSensor(dataDir: string, id: string, ...flags: string[]): Promise<{ token?: string; keyId?: string; key?: string }> {
  const r = await outpost(["sensors", "add", id, "--data-dir", dataDir, ...flags]);
  assert.equal(r.code, 0, r.out);
  return {
    ...(/^token (\S+)$/m.exec(r.out) ? { token: /^token (\S+)$/m.exec(r.out)![1] } : {}),
    ...(/^HMAC key id (\S+)$/m.exec(r.out) ? { keyId: /^HMAC key id (\S+)$/m.exec(r.out)![1], key: /^HMAC key {4}(\S+)$/m.exec(r.out)![1] } : {}),
  };
}

function sign(keyB64url: string, keyId: string, method: string, path: string, body: string, ts = Math.floor(Date.now() / 1000)): string {
  const digest = createHash("sha256").update(body).digest("base64url");
  const sig = createHmac("sha256", Buffer.from(keyB64url, "base64url")).update(`${method}\n${path}\n${ts}\n${digest}`).digest("base64url");
  return `keyId=${keyId}, ts=${ts}, sig=${sig}`;
}

const json = "application/json";

for (const runtime of RUNTIMES) {
  describe(`sensor authentication at ingest on ${runtime}`, () => {
    let nats: TestNats;
    let host: TestHost;
    let dataDir: string;
    const cred: Record<string, { token?: string; keyId?: string; key?: string }> = {};
    before(async () => {
      nats = await startNats();
      dataDir = await tempDir("outpost-sensors-");
      cred.t1 = await addSensor(dataDir, "t-1", "--topics", "sec,secw");
      cred.t2 = await addSensor(dataDir, "t-2", "--topics", "sec.*,sec", "--allow-priority");
      cred.slow = await addSensor(dataDir, "slow", "--topics", "sec", "--rate", "2", "--burst", "2");
      cred.h1 = await addSensor(dataDir, "h-1", "--topics", "sec", "--hmac");
      host = await startHost({ runtime, nats: nats.url, dataDir, workers: { "sec.ts": handler("sec", "worker"), "secw.ts": handler("secw", "wasm"), "other.ts": handler("other", "worker") } });
    });
    after(async () => {
      await host?.stop();
      await nats?.stop();
    });
    const bearer = (t: string | undefined) => ({ authorization: `Bearer ${t}` });

    test("no credential, a wrong token, a topic the sensor may not post to: 401 and 403, nothing stored", async () => {
      assert.match(host.logs(), /ingest needs a sensor credential \(4 sensor\(s\)/);
      await storesNothing(nats.jsm, async () => {
        const none = await ingest(host.url, "sec", JSON.stringify({ n: 1 }), json);
        assert.equal(none.status, 401);
        assert.equal(none.json.error, "credential_required");
        assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="outpost-ingest"');
        const wrong = await ingest(host.url, "sec", JSON.stringify({ n: 1 }), json, bearer(cred.t1!.token!.slice(0, -2) + "xx"));
        assert.deepEqual([wrong.status, wrong.json.error], [401, "invalid_credential"]);
        const forbidden = await ingest(host.url, "other", JSON.stringify({ n: 1 }), json, bearer(cred.t1!.token));
        assert.deepEqual([forbidden.status, forbidden.json.error], [403, "topic_forbidden"]);
        assert.equal(forbidden.json.message, 'Sensor t-1 may not post to topic "other"; nothing was stored');
        // An unknown topic does not reveal the known ones to a stranger.
        const unknown = await ingest(host.url, "nosuch", JSON.stringify({ n: 1 }), json);
        assert.equal(unknown.status, 401);
      });
      const ready = await (await fetch(`${host.url}/readyz`)).json();
      assert.equal(ready.ingestAuth, "required");
      assert.match(await (await host.api("/metrics")).text(), /^outpost_ingest_auth_required 1$/m);
    });

    test("a valid token stores the reading with its sensor id; the handler sees it as ctx.sensor (read from the stored message's header) in both tiers", async () => {
      for (const topic of ["sec", "secw"]) {
        const r = await ingest(host.url, topic, JSON.stringify({ n: 7 }), json, bearer(cred.t1!.token));
        assert.equal(r.status, 202, JSON.stringify(r.json));
        const [m] = await waitFor(async () => {
          const out = (await streamMessages(nats.jsm, "OUTBOX", `out.${topic}`)).filter((x) => x.value.n === 7);
          return out.length ? out : undefined;
        }, 20_000, `${topic} output`);
        assert.deepEqual(m!.value, { n: 7, sensor: "t-1" });
      }
    });

    test("past its rate a sensor gets 429 with Retry-After; what was accepted is exactly what was stored", async () => {
      const before = await lastSeq(nats.jsm, "INGEST");
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await ingest(host.url, "sec", JSON.stringify({ n: 100 + i }), json, bearer(cred.slow!.token))).status);
      const limited = await ingest(host.url, "sec", JSON.stringify({ n: 199 }), json, bearer(cred.slow!.token));
      assert.ok(statuses.includes(429) || limited.status === 429, statuses.join(","));
      if (limited.status === 429) {
        assert.equal(limited.json.error, "sensor_rate_limited");
        assert.ok(Number(limited.headers.get("retry-after")) >= 1);
      }
      const accepted = [...statuses, limited.status].filter((s) => s === 202).length;
      assert.ok(accepted >= 2 && accepted <= 4, statuses.join(","));
      assert.equal(await lastSeq(nats.jsm, "INGEST") - before, accepted);
    });

    test("HMAC: a signed request is stored; expired, replayed and tampered signatures are 401 with nothing stored", async () => {
      const { key, keyId } = cred.h1!;
      const body = JSON.stringify({ n: 42 });
      const good = sign(key!, keyId!, "POST", "/v1/ingest/sec", body);
      const ok = await ingest(host.url, "sec", body, json, { "outpost-signature": good });
      assert.equal(ok.status, 202, JSON.stringify(ok.json));
      await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.sec")).some((x) => x.value.n === 42 && x.value.sensor === "h-1"), 20_000, "the signed reading's output");
      await storesNothing(nats.jsm, async () => {
        const replay = await ingest(host.url, "sec", body, json, { "outpost-signature": good });
        assert.deepEqual([replay.status, replay.json.error], [401, "signature_replayed"]);
        const old = await ingest(host.url, "sec", body, json, { "outpost-signature": sign(key!, keyId!, "POST", "/v1/ingest/sec", body, Math.floor(Date.now() / 1000) - 1_000) });
        assert.deepEqual([old.status, old.json.error], [401, "signature_expired"]);
        const tampered = await ingest(host.url, "sec", JSON.stringify({ n: 43 }), json, { "outpost-signature": sign(key!, keyId!, "POST", "/v1/ingest/sec", body) });
        assert.deepEqual([tampered.status, tampered.json.error], [401, "invalid_signature"]);
        const otherPath = await ingest(host.url, "sec", body, json, { "outpost-signature": sign(key!, keyId!, "POST", "/v1/ingest/secw", body) });
        assert.deepEqual([otherPath.status, otherPath.json.error], [401, "invalid_signature"]);
      });
    });

    test("Idempotency-Key is scoped by sensor: another sensor cannot pre-claim it; priority only where allowed", async () => {
      const key = { "idempotency-key": "reading-0001" };
      const a = await ingest(host.url, "sec", JSON.stringify({ n: 500 }), json, { ...bearer(cred.t2!.token), ...key });
      const b = await ingest(host.url, "sec", JSON.stringify({ n: 501 }), json, { ...bearer(cred.t1!.token), ...key });
      const again = await ingest(host.url, "sec", JSON.stringify({ n: 502 }), json, { ...bearer(cred.t1!.token), ...key });
      assert.deepEqual([a.status, b.status, again.status], [202, 202, 202]);
      assert.equal(a.json.results[0].duplicate, undefined);
      assert.equal(b.json.results[0].duplicate, undefined, "t-1's reading is not t-2's duplicate");
      assert.equal(again.json.results[0].duplicate, true);
      await storesNothing(nats.jsm, async () => {
        const high = await ingest(host.url, "sec", JSON.stringify({ n: 503 }), json, { ...bearer(cred.t1!.token), "outpost-priority": "high" });
        assert.deepEqual([high.status, high.json.error], [403, "priority_forbidden"]);
        const later = await ingest(host.url, "sec", JSON.stringify({ n: 504 }), json, { ...bearer(cred.t1!.token), "not-before": String(Date.now() + 60_000) });
        assert.deepEqual([later.status, later.json.error], [403, "not_before_forbidden"]);
      });
      assert.equal((await ingest(host.url, "sec", JSON.stringify({ n: 505 }), json, { ...bearer(cred.t2!.token), "outpost-priority": "high" })).status, 202);
    });

    test("revoke and rotate take effect without a restart", async () => {
      assert.equal((await ingest(host.url, "sec", JSON.stringify({ n: 600 }), json, bearer(cred.t2!.token))).status, 202);
      const rotated = await outpost(["sensors", "rotate", "t-2", "--data-dir", dataDir]);
      assert.equal(rotated.code, 0, rotated.out);
      const fresh = /^token (\S+)$/m.exec(rotated.out)![1];
      const revoked = await outpost(["sensors", "revoke", "t-1", "--data-dir", dataDir]);
      assert.equal(revoked.code, 0, revoked.out);
      await waitFor(async () => (await ingest(host.url, "sec", JSON.stringify({ n: 601 }), json, bearer(cred.t1!.token))).status === 401, 10_000, "t-1 refused");
      assert.equal((await ingest(host.url, "sec", JSON.stringify({ n: 602 }), json, bearer(cred.t2!.token))).status, 401, "t-2's old token");
      assert.equal((await ingest(host.url, "sec", JSON.stringify({ n: 603 }), json, bearer(fresh))).status, 202, "t-2's new token");
      assert.match(host.logs(), /sensor registry .* reloaded: 3 sensor\(s\)/);
    });
  });
}

test("without a registry ingest is open, but never silently: a warning beyond loopback, /readyz and /metrics say so", async () => {
  const nats = await startNats();
  const host = await startHost({ nats: nats.url, workers: { "sec.ts": handler("sec", "worker") }, args: ["--host", "0.0.0.0"] });
  try {
    assert.equal((await ingest(host.url, "sec", JSON.stringify({ n: 1 }), json)).status, 202);
    assert.match(host.logs(), /WARN .*ingest auth is off and the host listens on 0\.0\.0\.0/);
    const ready = await (await fetch(`${host.url}/readyz`)).json();
    assert.equal(ready.ingestAuth, "off");
    assert.match(ready.warnings[0], /^ingest auth: off/);
    assert.match(await (await host.api("/metrics")).text(), /^outpost_ingest_auth_required 0$/m);
  } finally {
    await host.stop();
    await nats.stop();
  }
});
