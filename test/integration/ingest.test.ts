import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { stat } from "node:fs/promises";
import { decodeCbor, encodeCbor } from "../../src/codec/cbor.ts";
import { ingest, join, lastSeq, startHost, startNats, streamMessages, waitFor, type TestHost, type TestNats, storesNothing as storesNothingIn } from "../_harness.ts";

const ECHO = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "temp",
  schema: v.object({ sensor: v.string(), celsius: v.number(), id: v.optional(v.string()) }),
  idField: "id",
  async handle(r, ctx) { await ctx.publish("echo.temp", { ...r, seq: ctx.seq }); },
});
`;
const RAW = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "raw", async handle(r, ctx) { await ctx.publish("echo.raw", r); } });
`;

describe("ingest over HTTP (Node host, real nats-server)", () => {
  let nats: TestNats;
  let host: TestHost;
  before(async () => {
    nats = await startNats();
    host = await startHost({ nats: nats.url, workers: { "echo.ts": ECHO, "raw.ts": RAW }, args: ["--body-limit", "4K", "--max-readings", "3"] });
  });
  after(async () => {
    await host?.stop();
    await nats?.stop();
  });

  const storesNothing = (fn: () => Promise<void>) => storesNothingIn(nats.jsm, fn);

  test("a JSON reading is stored, answered 202 with its sequence, and reaches the handler", async () => {
    const r = await ingest(host.url, "temp", JSON.stringify({ sensor: "s1", celsius: 21.5 }), "application/json");
    assert.equal(r.status, 202);
    assert.equal(r.json.topic, "temp");
    assert.equal(r.json.accepted, 1);
    const seq = r.json.results[0].seq;
    assert.deepEqual(r.json.results, [{ index: 0, seq }]);
    const out = await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.echo.temp")).find((m) => m.value.seq === seq));
    assert.deepEqual(out.value, { sensor: "s1", celsius: 21.5, seq });
  });

  test("a CBOR sequence stores every reading, in order", async () => {
    const body = new Uint8Array([...encodeCbor({ sensor: "a", celsius: 1 }), ...encodeCbor({ sensor: "b", celsius: 2 })]);
    const r = await ingest(host.url, "temp", body, "application/cbor-seq");
    assert.equal(r.status, 202);
    assert.equal(r.json.accepted, 2);
    assert.equal(r.json.results[1].seq, r.json.results[0].seq + 1);
  });

  test("400: malformed JSON names the problem and stores nothing", async () => {
    await storesNothing(async () => {
      const r = await ingest(host.url, "temp", '{"sensor": ', "application/json");
      assert.equal(r.status, 400);
      assert.equal(r.json.error, "malformed_body");
      assert.match(r.json.message, /^Malformed JSON: /);
    });
  });

  test("400: malformed CBOR names the byte offset and stores nothing", async () => {
    await storesNothing(async () => {
      const r = await ingest(host.url, "temp", new Uint8Array([0xa2, 0x61, 0x61]), "application/cbor");
      assert.equal(r.status, 400);
      assert.deepEqual(r.json, { error: "malformed_body", message: "Malformed CBOR at byte 1: map of 2 pairs cannot fit in the 2 bytes left" });
    });
  });

  test("400: a schema failure names the reading index and field, and no reading of the request is stored", async () => {
    await storesNothing(async () => {
      const body = JSON.stringify([{ sensor: "ok", celsius: 1 }, { sensor: "bad", celsius: "hot" }]);
      const r = await ingest(host.url, "temp", body, "application/json");
      assert.equal(r.status, 400);
      assert.equal(r.json.error, "invalid_reading");
      assert.equal(r.json.index, 1);
      assert.equal(r.json.path, "celsius");
      assert.equal(r.json.message, 'Reading 1, field celsius: Invalid type: Expected number but received "hot"; nothing was stored');
      assert.deepEqual(r.json.issues, [{ index: 1, path: "celsius", message: 'Invalid type: Expected number but received "hot"' }]);
    });
  });

  test("404: an unknown topic lists the known ones", async () => {
    await storesNothing(async () => {
      const r = await ingest(host.url, "nope", "{}", "application/json");
      assert.equal(r.status, 404);
      assert.deepEqual(r.json, { error: "unknown_topic", message: 'Unknown topic "nope"; known topics: raw, temp', topics: ["raw", "temp"] });
    });
  });

  test("413: a body over the limit is refused, by Content-Length", async () => {
    await storesNothing(async () => {
      const r = await ingest(host.url, "raw", JSON.stringify({ pad: "x".repeat(5000) }), "application/json");
      assert.equal(r.status, 413);
      assert.deepEqual(r.json, { error: "payload_too_large", message: "Body exceeds the 4096-byte limit", limit: 4096 });
    });
  });

  test("413: a chunked body without Content-Length is cut off while streaming", async () => {
    await storesNothing(async () => {
      const { status, sent, total } = await chunkedPost(new URL(host.url), "/v1/ingest/raw", 1024, 1024);
      assert.equal(status, 413);
      assert.ok(sent < total, `the answer came before the client sent all ${total} bytes (sent ${sent})`);
    });
  });

  test("413: more readings in one request than --max-readings", async () => {
    await storesNothing(async () => {
      const r = await ingest(host.url, "raw", JSON.stringify([1, 2, 3, 4].map((n) => ({ n }))), "application/json");
      assert.equal(r.status, 413);
      assert.deepEqual(r.json, { error: "too_many_readings", message: "4 readings in one request; at most 3 are accepted", limit: 3 });
    });
  });

  test("415: other content types are refused, naming the accepted ones", async () => {
    await storesNothing(async () => {
      const r = await ingest(host.url, "temp", "sensor=s1", "text/plain");
      assert.equal(r.status, 415);
      assert.deepEqual(r.json, {
        error: "unsupported_media_type",
        message: 'Content-Type "text/plain" is not supported; use application/cbor, application/cbor-seq, application/json, application/senml+json or application/senml+cbor',
      });
    });
  });

  test("an Idempotency-Key stores a reading once; the retry is answered as a duplicate of the same sequence", async () => {
    const before = await lastSeq(nats.jsm, "INGEST");
    const body = encodeCbor({ sensor: "s9", celsius: 9 });
    const a = await ingest(host.url, "temp", body, "application/cbor", { "idempotency-key": "k-1" });
    const b = await ingest(host.url, "temp", body, "application/cbor", { "idempotency-key": "k-1" });
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.deepEqual(a.json.results, [{ index: 0, seq: before + 1 }]);
    assert.deepEqual(b.json.results, [{ index: 0, seq: before + 1, duplicate: true }]);
    assert.equal(await lastSeq(nats.jsm, "INGEST"), before + 1);
  });

  test("the handler's idField deduplicates readings within and across batches", async () => {
    const before = await lastSeq(nats.jsm, "INGEST");
    const a = await ingest(host.url, "temp", JSON.stringify([{ sensor: "x", celsius: 1, id: "r1" }, { sensor: "x", celsius: 2, id: "r2" }]), "application/json");
    const b = await ingest(host.url, "temp", JSON.stringify([{ sensor: "x", celsius: 2, id: "r2" }, { sensor: "x", celsius: 3, id: "r3" }]), "application/json");
    assert.equal(a.status, 202);
    assert.deepEqual(b.json.results, [{ index: 0, seq: before + 2, duplicate: true }, { index: 1, seq: before + 3 }]);
    assert.equal(await lastSeq(nats.jsm, "INGEST"), before + 3);
  });

  test("Accept: application/cbor gets CBOR answers, errors included", async () => {
    const res = await fetch(`${host.url}/v1/ingest/nope`, { method: "POST", body: "{}", headers: { "content-type": "application/json", accept: "application/cbor" } });
    assert.equal(res.status, 404);
    assert.equal(res.headers.get("content-type"), "application/cbor");
    const v = decodeCbor(new Uint8Array(await res.arrayBuffer())) as { error: string };
    assert.equal(v.error, "unknown_topic");
  });

  test("without --admin-token the host makes one in its data directory (0600); the admin surface needs it", async () => {
    const st = await stat(join(host.dataDir, "admin.token"));
    assert.equal(st.mode & 0o777, 0o600);
    for (const path of ["/v1/dlq", "/v1/handlers", "/metrics", "/v1/bundles"]) {
      const r = await fetch(`${host.url}${path}`, { headers: { authorization: "Bearer anything" } });
      assert.equal(r.status, 401, path);
      assert.equal((await r.json()).error, "unauthorized");
      assert.equal((await host.api(path)).status, 200, path);
    }
  });

  test("GET /readyz and /v1/handlers describe the running handlers", async () => {
    const ready = await (await fetch(`${host.url}/readyz`)).json();
    assert.deepEqual(ready, {
      ready: true, broker: true, streams: true, store: { ok: true, problems: [] }, handlers: { running: 2, failed: 0, crashing: [] },
      storage: { INGEST: ready.storage.INGEST, OUTBOX: ready.storage.OUTBOX, DLQ: ready.storage.DLQ }, ingestAuth: "off",
    });
    for (const s of ["INGEST", "OUTBOX", "DLQ"] as const) assert.ok(ready.storage[s] >= 0 && ready.storage[s] < 0.01, `${s} use ${ready.storage[s]}`);
    const { handlers } = await (await host.api("/v1/handlers")).json();
    assert.deepEqual(handlers.map((h: { name: string; status: string; topic: string; consumer: string }) => [h.name, h.status, h.topic, h.consumer]), [
      ["echo", "running", "temp", "outpost-echo"],
      ["raw", "running", "raw", "outpost-raw"],
    ]);
    // echo's schema is data only: ingest checks it in the host (the 400 above came from there).
    assert.deepEqual(handlers.map((h: { schemaCheck: string | null }) => h.schemaCheck), ["host", null]);
    assert.match(handlers[0].version, /^[0-9a-f]{12}$/);
    assert.ok(handlers[0].counts.acked >= 1);
  });

  test("503 with Retry-After while the broker is down; nothing is acknowledged that was not stored", async () => {
    await nats.kill();
    try {
      const r = await waitFor(async () => {
        const x = await ingest(host.url, "temp", JSON.stringify({ sensor: "s", celsius: 1 }), "application/json");
        return x.status === 503 ? x : undefined;
      }, 15_000, "503");
      assert.equal(r.headers.get("retry-after"), "2");
      assert.equal(r.json.error, "broker_unavailable");
      const ready = await fetch(`${host.url}/readyz`);
      assert.equal(ready.status, 503);
    } finally {
      await nats.restart();
    }
    const ok = await waitFor(async () => {
      const x = await ingest(host.url, "temp", JSON.stringify({ sensor: "back", celsius: 2 }), "application/json");
      return x.status === 202 ? x : undefined;
    }, 20_000, "recovery after the broker restarted");
    assert.equal(ok.json.accepted, 1);
  });
});

/**
 * POST a chunked body over a raw socket, one chunk per 5 ms, until the server answers or
 * `chunks` chunks were sent; reports the status and how many body bytes went out before it.
 */
async function chunkedPost(base: URL, path: string, chunkSize: number, chunks: number): Promise<{ status: number; sent: number; total: number }> {
  const sock = tcpConnect(Number(base.port), base.hostname);
  await new Promise<void>((r) => sock.once("connect", () => r()));
  let answer = "";
  let answered = false;
  sock.on("data", (d) => {
    answer += d.toString();
    answered = true;
  });
  sock.on("error", () => {});
  sock.write(`POST ${path} HTTP/1.1\r\nHost: ${base.host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
  let sent = 0;
  const chunk = " ".repeat(chunkSize);
  for (let i = 0; i < chunks && !answered && !sock.destroyed; i++) {
    sock.write(`${chunkSize.toString(16)}\r\n${chunk}\r\n`);
    sent += chunkSize;
    await new Promise((r) => setTimeout(r, 5));
  }
  await waitFor(() => answered, 5_000, "an answer");
  sock.destroy();
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1]), sent, total: chunkSize * chunks };
}
