import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { hostCommand, ingest, join, startHost, startNats, streamMessages, waitFor, type TestHost, type TestNats } from "../_harness.ts";

const FAILING = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "work", retry: { maxAttempts: 1 }, handle(r) { throw new TypeError("bug " + r.n); } });
`;
const FIXED = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "work", retry: { maxAttempts: 1 }, async handle(r, ctx) { await ctx.publish("done", { n: r.n, attempt: ctx.attempt }); } });
`;
const TOKEN = "t0p-secret";

describe("dead-letter queue API and CLI", () => {
  let nats: TestNats;
  let host: TestHost;
  const api = (path: string, init: RequestInit = {}, token: string | null = TOKEN) =>
    fetch(`${host.url}${path}`, { ...init, headers: token ? { authorization: `Bearer ${token}` } : {} });
  before(async () => {
    nats = await startNats();
    host = await startHost({ nats: nats.url, workers: { "work.ts": FAILING }, args: ["--admin-token", TOKEN] });
    for (const n of [1, 2, 3, 4]) assert.equal((await ingest(host.url, "work", JSON.stringify({ n }), "application/json")).status, 202);
    await waitFor(async () => (await streamMessages(nats.jsm, "DLQ")).length === 4, 10_000, "4 dead letters");
  });
  after(async () => {
    await host?.stop();
    await nats?.stop();
  });

  test("the admin routes need the bearer token; ingest does not", async () => {
    for (const token of [null, "wrong"]) {
      const r = await api("/v1/dlq", {}, token);
      assert.equal(r.status, 401);
      assert.deepEqual(await r.json(), { error: "unauthorized", message: "This route needs Authorization: Bearer <the admin token>" });
    }
    assert.equal((await api("/v1/dlq/1/replay", { method: "POST" }, null)).status, 401);
    assert.equal((await api("/v1/dlq/1", { method: "DELETE" }, "wrong")).status, 401);
    assert.equal((await ingest(host.url, "work", JSON.stringify({ n: 0 }), "application/json", { authorization: "Bearer nope" })).status, 202);
    await waitFor(async () => (await streamMessages(nats.jsm, "DLQ")).length === 5, 10_000, "5 dead letters");
  });

  test("GET /v1/dlq pages through entries with every field; GET /v1/dlq/:id shows one", async () => {
    const first = await (await api("/v1/dlq?limit=2")).json();
    assert.equal(first.entries.length, 2);
    assert.equal(typeof first.next, "number");
    const rest = await (await api(`/v1/dlq?after=${first.next}&limit=10`)).json();
    assert.equal(rest.next, null);
    const all = [...first.entries, ...rest.entries];
    assert.deepEqual(all.map((e: { payload: { n: number } }) => e.payload.n), [1, 2, 3, 4, 0]);
    const e = all[0];
    assert.deepEqual(Object.keys(e).sort(), ["attempts", "error", "failedAt", "firstError", "handler", "id", "payload", "seq", "storedAt", "subject", "traceparent", "version"]);
    assert.deepEqual([e.handler, e.subject, e.attempts, e.error.name, e.error.message], ["work", "ingest.work", 1, "TypeError", "bug 1"]);
    assert.match(e.error.stack, /TypeError: bug 1/);
    assert.match(e.version, /^[0-9a-f]{12}$/);
    assert.ok(Date.parse(e.storedAt) <= Date.parse(e.failedAt));
    const one = await (await api(`/v1/dlq/${e.id}`)).json();
    assert.deepEqual(one, e);
    assert.equal((await (await api("/v1/dlq?handler=nobody")).json()).entries.length, 0);
    assert.equal((await (await api("/v1/dlq?topic=work")).json()).entries.length, 5);
    const missing = await api("/v1/dlq/99999");
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { error: "not_found", message: "No dead letter with id 99999" });
  });

  test("after a fix, replay reprocesses a dead letter exactly once; bulk replay does the rest", async () => {
    await writeFile(join(host.workersDir, "work.ts"), FIXED);
    await waitFor(async () => {
      const { handlers } = await (await host.api("/v1/handlers")).json();
      return handlers[0].swaps === 1;
    }, 10_000, "the fixed version");
    const { entries } = await (await api("/v1/dlq")).json();
    const target = entries[0];
    const r = await api(`/v1/dlq/${target.id}/replay`, { method: "POST" });
    assert.equal(r.status, 200);
    const replayed = await r.json();
    assert.equal(replayed.id, target.id);
    const again = await api(`/v1/dlq/${target.id}/replay`, { method: "POST" });
    assert.equal(again.status, 404, "a dead letter is replayed once");
    const done = await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.done")).find((m) => m.value.n === target.payload.n), 10_000, "the replayed reading");
    assert.equal(done.value.attempt, 1, "the attempt count starts again");
    const bulk = await (await api("/v1/dlq/replay?handler=work", { method: "POST" })).json();
    assert.equal(bulk.replayed, 4);
    const out = await waitFor(async () => {
      const m = await streamMessages(nats.jsm, "OUTBOX", "out.done");
      return m.length >= 5 ? m : undefined;
    }, 10_000, "every replayed reading");
    await new Promise((res) => setTimeout(res, 200));
    assert.deepEqual((await streamMessages(nats.jsm, "OUTBOX", "out.done")).map((m) => m.value.n).sort(), [0, 1, 2, 3, 4]);
    assert.equal(out.length, 5);
    assert.deepEqual((await (await api("/v1/dlq")).json()).entries, []);
  });

  test("outpost dlq ls and purge work from the command line", async () => {
    await writeFile(join(host.workersDir, "work.ts"), FAILING);
    await waitFor(async () => {
      const { handlers } = await (await host.api("/v1/handlers")).json();
      return handlers[0].swaps === 2;
    }, 10_000, "the failing version again");
    for (const n of [7, 8]) await ingest(host.url, "work", JSON.stringify({ n }), "application/json");
    await waitFor(async () => (await (await api("/v1/dlq")).json()).entries.length === 2, 10_000, "2 dead letters");
    const cli = async (...args: string[]) => {
      const [cmd, ...pre] = hostCommand("node");
      const p = spawn(cmd!, [...pre, "dlq", ...args, "--url", host.url], { env: { ...process.env, OUTPOST_ADMIN_TOKEN: TOKEN } });
      let out = "";
      p.stdout.on("data", (d) => (out += d));
      p.stderr.on("data", (d) => (out += d));
      const code = await new Promise((r) => p.once("exit", r));
      return { code, out };
    };
    const ls = await cli("ls");
    assert.equal(ls.code, 0);
    assert.match(ls.out, /work\s+ingest\.work\s+seq \d+\s+1 attempts\s+TypeError: bug 7/);
    assert.match(ls.out, /2 shown/);
    const purge = await cli("purge", "--handler", "work", "--json");
    assert.equal(purge.code, 0);
    assert.deepEqual(JSON.parse(purge.out), { handler: "work", deleted: 2 });
    assert.deepEqual((await (await api("/v1/dlq")).json()).entries, []);
    const bad = await cli("show", "424242");
    assert.equal(bad.code, 1);
    assert.match(bad.out, /^outpost: GET \/v1\/dlq\/424242: 404 No dead letter with id 424242/);
  });
});
