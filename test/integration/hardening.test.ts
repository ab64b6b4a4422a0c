/**
 * One request must never freeze, bypass, fill or disconnect the host: each finding of the
 * adversarial probe, reproduced at a size that still proves the bound, against a real host.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect as tcpConnect, type Socket } from "node:net";
import { readFile } from "node:fs/promises";
import { get } from "node:http";
import { encodeCbor } from "../../src/codec/cbor.ts";
import { ingest, sleep, startHost, startNats, streamMessages, waitFor, type TestHost, type TestNats, storesNothing as storesNothingIn } from "../_harness.ts";

const TEMP = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "temp",
  schema: v.object({ sensor: v.pipe(v.string(), v.minLength(1)), celsius: v.pipe(v.number(), v.minValue(-273.15)) }),
  async handle(r, ctx) { await ctx.publish("echo.temp", r); },
});
`;
const RAW = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "raw", async handle(r, ctx) {} });
`;
const WILD = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ subjects: ["wild.>"], async handle(r, ctx) {} });
`;
const flood = (tier: "worker" | "wasm") => `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "flood.${tier}",
  isolation: "${tier}",
  retry: { maxAttempts: 1 },
  timeoutMs: 10000,
  async handle(r, ctx) {
    // Not awaited: the whole flood is posted before the first answer comes back.
    const all = [];
    for (let i = 0; i < r.n; i++) all.push(ctx.publish("flood.${tier}", { i }).catch(() => {}));
    await Promise.all(all);
  },
});
`;
const LOGS = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "logs",
  retry: { maxAttempts: 1 },
  async handle(r, ctx) {
    if (r.big) ctx.log("x".repeat(5_000_000));
    for (let i = 0; i < r.lines; i++) ctx.log("line " + i);
  },
});
`;
const CHAIN = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "chain",
  retry: { maxAttempts: 1 },
  async handle(r, ctx) { for (let i = 0; i < 3; i++) await ctx.emit("raw", { i }, { delayMs: 300 * 86_400_000 }); },
});
`;
const GREEDY = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "greedy", memoryMb: 256, async handle() {} });
`;

function rss(pid: number): Promise<number> {
  return readFile(`/proc/${pid}/status`, "utf8").then((s) => Number(/VmRSS:\s+(\d+)/.exec(s)![1]) * 1024);
}

describe("hardening: hostile requests and handlers (Node host, real nats-server)", () => {
  let nats: TestNats;
  let host: TestHost;
  before(async () => {
    nats = await startNats();
    host = await startHost({
      nats: nats.url,
      workers: { "temp.ts": TEMP, "raw.ts": RAW, "wild.ts": WILD, "flood-worker.ts": flood("worker"), "flood-wasm.ts": flood("wasm"), "logs.ts": LOGS, "greedy.ts": GREEDY, "chain.ts": CHAIN },
      args: ["--body-limit", "2M", "--max-delayed", "5", "--max-outputs", "50", "--max-log-lines", "20", "--max-connections", "40", "--max-handler-memory", "64"],
    });
  });
  after(async () => {
    await host?.stop();
    await nats?.stop();
  });

  const storesNothing = (fn: () => Promise<void>) => storesNothingIn(nats.jsm, fn);

  test("finding 1: a 256 KB CBOR bignum is refused at once, and /healthz answers meanwhile", async () => {
    const n = 256 * 1024;
    const body = new Uint8Array([0xa3, 0x66, ...Buffer.from("sensor"), 0x62, ...Buffer.from("s1"), 0x67, ...Buffer.from("celsius"), 0x01, 0x61, 0x78, 0xc2, 0x5a,
      n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255, ...new Uint8Array(n).fill(0xff)]);
    await storesNothing(async () => {
      const [r, health] = await Promise.all([ingest(host.url, "raw", body, "application/cbor"), fetch(`${host.url}/healthz`)]);
      assert.equal(health.status, 200);
      assert.equal(r.status, 400);
      assert.deepEqual(r.json, { error: "malformed_body", message: "Malformed CBOR at byte 23: bignum of 262144 bytes; at most 64 bytes are accepted" });
    });
  });

  test("finding 2: JSON nested 10,000 deep is refused like CBOR, and the schema isolate keeps validating", async () => {
    const deep = `{"sensor":"s","celsius":1,"x":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;
    await storesNothing(async () => {
      const r = await ingest(host.url, "temp", deep, "application/json");
      assert.equal(r.status, 400);
      assert.deepEqual(r.json, { error: "malformed_body", message: "Malformed JSON in reading 0: nesting deeper than 32", index: 0 });
    });
    // Right after it: an invalid reading is still refused (never let through unchecked), a valid one stored.
    for (let i = 0; i < 6; i++) {
      const bad = await ingest(host.url, "temp", JSON.stringify({ sensor: "", celsius: -1000 }), "application/json");
      assert.equal(bad.status, 400, JSON.stringify(bad.json));
      assert.equal(bad.json.error, "invalid_reading");
      const good = await ingest(host.url, "temp", JSON.stringify({ sensor: "s", celsius: 20 }), "application/json");
      assert.equal(good.status, 202, JSON.stringify(good.json));
    }
    assert.doesNotMatch(host.logs(), /schema isolate died|did not finish within/);
  });

  test("finding 3: delayed readings have a budget of their own (--max-delayed), and ordinary readings still go in", async () => {
    const later = String(Date.now() + 364 * 86_400_000);
    const three = JSON.stringify([{}, {}, {}]);
    const first = await ingest(host.url, "raw", three, "application/json", { "not-before": later });
    assert.equal(first.status, 202, JSON.stringify(first.json));
    await storesNothing(async () => {
      const second = await ingest(host.url, "raw", three, "application/json", { "not-before": later });
      assert.equal(second.status, 429);
      assert.equal(second.json.error, "delayed_backlog");
      assert.match(second.json.message, /^3 delayed readings are waiting and this request adds 3 \(at most 5, --max-delayed\); nothing was stored$/);
      assert.equal(second.headers.get("retry-after"), "60");
    });
    assert.equal((await ingest(host.url, "raw", "{}", "application/json")).status, 202);
    // ctx.emit with delayMs meets the same budget: two more fit, the third is refused.
    assert.equal((await ingest(host.url, "chain", "{}", "application/json")).status, 202);
    const dl = await waitFor(async () => (await streamMessages(nats.jsm, "DLQ")).find((m) => m.value.handler === "chain"), 10_000, "chain dead letter");
    assert.match(dl.value.error.message, /^ctx\.emit: \d+ delayed readings are waiting and this request adds 1 \(at most 5, --max-delayed\); nothing was stored$/);
    assert.equal((await streamMessages(nats.jsm, "INGEST", "ingest.~delay.raw")).length, 5);
  });

  test("finding 4: topics outside the grammar are refused before they reach NATS; the connection stays up", async () => {
    const long = "a".repeat(5_000);
    for (const t of [long, "a%0D%0A2026-01-01T00:00:00.000Z%20ERROR%20forged", "wild.%3E", "wild.*", "wild.~hi", "wild.%24JS.API", "wild..x", "wild.x.", "wild.a%20b", "wild.%00"]) {
      await storesNothing(async () => {
        const r = await ingest(host.url, t, "{}", "application/json");
        assert.equal(r.status, 400, t);
        assert.equal(r.json.error, "invalid_topic");
        assert.match(r.json.message, /is not a topic name: dot-separated words of letters, digits, _ and -, at most 200 characters$/);
      });
    }
    assert.equal((await ingest(host.url, "wild.ok", "{}", "application/json")).status, 202);
    assert.doesNotMatch(host.logs(), /lost the connection to nats-server/);
    assert.doesNotMatch(host.logs(), /^2026-01-01T00:00:00.000Z ERROR forged/m);
  });

  test("finding 6: a ctx.publish flood stops at --max-outputs, fails the attempt, and nothing is published after it", async () => {
    for (const tier of ["worker", "wasm"] as const) {
      const before = await rss(host.proc.pid!);
      const r = await ingest(host.url, `flood.${tier}`, JSON.stringify({ n: 100_000 }), "application/json");
      assert.equal(r.status, 202);
      const dl = await waitFor(async () => (await streamMessages(nats.jsm, "DLQ")).find((m) => m.value.handler === `flood-${tier}`), 20_000, `${tier} dead letter`);
      assert.equal(dl.value.error.name, "OutputLimitError");
      assert.equal(dl.value.error.message, `Handler flood-${tier} sent more than 50 outputs (ctx.publish and ctx.emit) for one message (--max-outputs); the attempt failed and its later outputs were dropped`);
      const published = async () => (await streamMessages(nats.jsm, "OUTBOX", `out.flood.${tier}`)).length;
      const n = await published();
      assert.ok(n <= 50, `${tier}: ${n} outputs published, at most 50 allowed`);
      await sleep(1_000);
      assert.equal(await published(), n, `${tier}: outputs published after the attempt failed`);
      const grew = (await rss(host.proc.pid!)) - before;
      assert.ok(grew < 150 * 1024 * 1024, `${tier}: host RSS grew ${Math.round(grew / 1048576)} MiB`);
    }
  });

  test("finding 6: ctx.log is cut at 16 KiB a line and fails the attempt past --max-log-lines", async () => {
    assert.equal((await ingest(host.url, "logs", JSON.stringify({ big: true, lines: 0 }), "application/json")).status, 202);
    const line = await waitFor(() => host.logs().split("\n").find((l) => l.includes("[logs] xxxx")), 10_000, "the long line");
    assert.ok(line.length < 16_384 + 100, `a log line of ${line.length} characters`);
    assert.equal((await ingest(host.url, "logs", JSON.stringify({ lines: 500 }), "application/json")).status, 202);
    const dl = await waitFor(async () => (await streamMessages(nats.jsm, "DLQ")).find((m) => m.value.handler === "logs"), 10_000, "log dead letter");
    assert.equal(dl.value.error.name, "OutputLimitError");
    assert.match(dl.value.error.message, /wrote more than 20 log lines for one message \(--max-log-lines\)/);
    assert.doesNotMatch(host.logs(), /line 25\b/);
  });

  test("finding 9: a reading larger than the broker's max payload is 413, not a 503 to retry forever", async () => {
    const big = JSON.stringify({ blob: "x".repeat(1024 * 1024 - 100) });
    await storesNothing(async () => {
      const r = await ingest(host.url, "raw", big, "application/json", { "idempotency-key": "k".repeat(100) });
      assert.equal(r.status, 413);
      assert.equal(r.json.error, "reading_too_large");
      assert.match(r.json.message, /^Reading 0 is \d+ bytes; the broker takes at most \d+ bytes per reading \(max_payload 1048576 less headers\); nothing was stored$/);
    });
    await storesNothing(async () => {
      const r = await ingest(host.url, "raw", "{}", "application/json", { "idempotency-key": "k".repeat(200) });
      assert.equal(r.status, 400);
      assert.equal(r.json.error, "invalid_idempotency_key");
    });
  });

  test("finding 10: a JSON batch with one bad reading on a topic without schema stores none of it", async () => {
    const body = `[{"a":1},{"a":2},${"[".repeat(40)}${"]".repeat(40)}]`;
    await storesNothing(async () => {
      const r = await ingest(host.url, "raw", body, "application/json");
      assert.equal(r.status, 400);
      assert.deepEqual(r.json, { error: "malformed_body", message: "Malformed JSON in reading 2: nesting deeper than 32", index: 2 });
    });
  });

  test("finding 11: connections past --max-connections get 503 and the host answers again once they close", async () => {
    const socks: Socket[] = [];
    const port = Number(new URL(host.url).port);
    for (let i = 0; i < 45; i++) {
      socks.push(await new Promise<Socket>((res, rej) => {
        const s = tcpConnect(port, "127.0.0.1", () => res(s));
        s.on("error", () => {});
        s.once("error", rej);
      }));
    }
    await sleep(100);
    // A fresh connection (fetch would reuse a kept-alive one) is answered 503 and closed.
    const fresh = () => new Promise<{ status: number; body: string }>((res, rej) => {
      get({ host: "127.0.0.1", port, path: "/healthz", agent: false }, (r) => {
        let body = "";
        r.on("data", (d) => (body += d));
        r.on("end", () => res({ status: r.statusCode ?? 0, body }));
      }).on("error", rej);
    });
    const r = await fresh();
    assert.equal(r.status, 503);
    assert.equal(JSON.parse(r.body).error, "too_many_connections");
    for (const s of socks) s.destroy();
    await waitFor(async () => (await fresh()).status === 200, 5_000, "healthz 200 on a new connection again");
  });

  test("finding 12: a handler asking for more memory than --max-handler-memory is refused", async () => {
    const rows = (await (await host.api("/v1/handlers")).json()).handlers as { name: string; status: string; loadError: { message: string } | null }[];
    const greedy = rows.find((h) => h.name === "greedy")!;
    assert.equal(greedy.status, "failed");
    assert.equal(greedy.loadError?.message, "Handler greedy asks for memoryMb 256, above this host's ceiling of 64 MiB (--max-handler-memory)");
  });

  test("finding 13: invalid UTF-8 in a CBOR text and __proto__ keys are refused in both encodings", async () => {
    await storesNothing(async () => {
      const bad = new Uint8Array([0xa1, 0x61, 0x73, 0x62, 0xff, 0xfe]);
      const r = await ingest(host.url, "raw", bad, "application/cbor");
      assert.equal(r.status, 400);
      assert.deepEqual(r.json, { error: "malformed_body", message: "Malformed CBOR at byte 4: text string is not valid UTF-8" });
      const proto = encodeCbor({ a: 1 });
      const withProto = new Uint8Array([0xa1, 0x69, ...Buffer.from("__proto__"), ...proto]);
      const c = await ingest(host.url, "raw", withProto, "application/cbor");
      assert.deepEqual(c.json, { error: "malformed_body", message: 'Malformed CBOR at byte 1: the map key "__proto__" is not accepted' });
      const j = await ingest(host.url, "raw", '{"__proto__":{"admin":true}}', "application/json");
      assert.deepEqual(j.json, { error: "malformed_body", message: 'Malformed JSON in reading 0: the key "__proto__" is not accepted', index: 0 });
    });
  });
});

for (const runtime of ["deno", "bun"] as const) {
  test(`on ${runtime}, the same bounds hold: bignum, depth, topic, connection cap and output caps`, async () => {
    const host = await startHost({ runtime, workers: { "raw.ts": RAW, "flood-worker.ts": flood("worker") }, args: ["--max-outputs", "50", "--max-connections", "4"] });
    try {
      const bignum = new Uint8Array([0xa1, 0x61, 0x6e, 0xc2, 0x58, 200, ...new Uint8Array(200).fill(0xff)]);
      assert.deepEqual((await ingest(host.url, "raw", bignum, "application/cbor")).json, {
        error: "malformed_body", message: "Malformed CBOR at byte 4: bignum of 200 bytes; at most 64 bytes are accepted",
      });
      const deep = await ingest(host.url, "raw", `{"x":${"[".repeat(100)}${"]".repeat(100)}}`, "application/json");
      assert.equal(deep.json.message, "Malformed JSON in reading 0: nesting deeper than 32");
      assert.equal((await ingest(host.url, "a%0D%0Ab", "{}", "application/json")).json.error, "invalid_topic");
      assert.equal((await ingest(host.url, "flood.worker", JSON.stringify({ n: 20_000 }), "application/json")).status, 202);
      const rows = await waitFor(async () => {
        const h = (await (await host.api("/v1/handlers")).json()).handlers.find((x: { name: string }) => x.name === "flood-worker");
        return h.counts.deadLettered === 1 ? h : undefined;
      }, 20_000, "the flood dead-lettered");
      assert.equal(rows.counts.acked, 0);
      // Deno and Bun show no connections: the cap counts requests in progress.
      const slow = Array.from({ length: 8 }, () => ingest(host.url, "raw", JSON.stringify(Array.from({ length: 2_000 }, () => ({ a: 1 }))), "application/json"));
      const statuses = (await Promise.all(slow)).map((r) => r.status);
      assert.ok(statuses.every((s) => s === 202 || s === 503), statuses.join(","));
      assert.equal((await fetch(`${host.url}/healthz`)).status, 200);
    } finally {
      await host.stop();
    }
  });
}
