import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { encodeCbor } from "../../src/codec/cbor.ts";
import { coreScenario, ECHO_HANDLER as ECHO } from "../_scenario.ts";
import { ingest, RUNTIMES, startHost, startNats, streamMessages, waitFor, type TestHost, type TestNats } from "../_harness.ts";

const FLAKY = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "boom",
  retry: { maxAttempts: 3, backoff: [50, 100] },
  async handle(r, ctx) {
    ctx.log.warn("attempt " + ctx.attempt);
    throw new Error("boom " + r.n);
  },
});
`;
const PERMANENT = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "perm",
  retry: { maxAttempts: 5 },
  handle(r, ctx) { throw new ctx.Permanent("cannot ever work"); },
});
`;
const CHAIN = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "chain",
  retry: { maxAttempts: 1 },
  async handle(r, ctx) { await ctx.emit(r.to, { n: r.n }); },
});
`;
const PROBE = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "probe",
  async handle(r, ctx) {
    const out = {};
    try { await fetch(r.url); out.fetch = "reached"; } catch (e) { out.fetch = e.name; }
    try {
      const D = globalThis.Deno;
      out.env = (D ? D.env.get("PATH") : process.env.PATH) ? "read" : "empty";
    } catch (e) { out.env = e.name; }
    await ctx.publish("probe", out);
  },
});
`;
const THROWS_AT_IMPORT = `throw new Error("broken at import");\nexport default 1;\n`;
const BAD_EXPORT = `export default { topic: "x" };\n`;
const SYNTAX = `export default defineHandler({ topic: "y", handle( {\n`;

for (const runtime of RUNTIMES) {
  describe(`end to end on ${runtime}`, () => {
    let nats: TestNats;
    let host: TestHost;
    before(async () => {
      nats = await startNats();
      host = await startHost({
        runtime,
        nats: nats.url,
        workers: {
          "echo.ts": ECHO, "flaky.ts": FLAKY, "perm.ts": PERMANENT, "chain.ts": CHAIN, "probe.ts": PROBE,
          "throws.ts": THROWS_AT_IMPORT, "bad-export.ts": BAD_EXPORT, "syntax.ts": SYNTAX,
          "_helper.ts": "export const x = 1;\n",
        },
      });
    });
    after(async () => {
      await host?.stop();
      await nats?.stop();
    });

    test("CBOR, CBOR-seq and JSON readings reach the handler; its ctx.publish output is in OUTBOX", async () => {
      const { byN, seqs, count } = await coreScenario(host, nats);
      for (const [i, n] of [1, 2, 3, 4, 5].entries()) {
        const v = byN.get(n);
        assert.equal(v.id, `INGEST:${seqs[i]}`);
        assert.equal(v.attempt, 1);
        assert.equal(v.aborted, false);
      }
      assert.equal(count, 5, "each reading handled once");
      const c = await nats.jsm.consumers.info("INGEST", "outpost-echo");
      await waitFor(async () => (await nats.jsm.consumers.info("INGEST", "outpost-echo")).num_ack_pending === 0, 5_000, "acks");
      assert.equal(c.num_pending, 0);
    });

    test("a throwing handler's message is retried with backoff, then lands in DLQ with its error", async () => {
      const r = await ingest(host.url, "boom", JSON.stringify({ n: 7 }), "application/json");
      assert.equal(r.status, 202);
      const seq = r.json.results[0].seq;
      const [dl] = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "DLQ", "dlq.flaky");
        return m.length ? m : undefined;
      }, 20_000, "a DLQ entry");
      assert.equal(dl!.subject, "dlq.flaky");
      const v = dl!.value;
      assert.equal(v.handler, "flaky");
      assert.match(v.version, /^[0-9a-f]{12}$/);
      assert.equal(v.subject, "ingest.boom");
      assert.equal(v.seq, seq);
      assert.equal(v.attempts, 3);
      assert.equal(v.error.name, "Error");
      assert.equal(v.error.message, "boom 7");
      assert.match(v.error.stack, /boom 7/);
      assert.equal(v.firstError.message, "boom 7");
      assert.ok(v.storedAt instanceof Date && v.failedAt instanceof Date && v.failedAt >= v.storedAt);
      assert.deepEqual(v.payload, encodeCbor({ n: 7 }));
      assert.equal(dl!.headers?.get("Outpost-Error"), "Error: boom 7");
      assert.equal((host.logs().match(/\[flaky\] attempt \d/g) ?? []).length, 3);
      // Acked after the DLQ write: nothing left pending for this handler.
      await waitFor(async () => {
        const c = await nats.jsm.consumers.info("INGEST", "outpost-flaky");
        return c.num_ack_pending === 0 && c.num_pending === 0;
      }, 5_000, "flaky consumer drained");
      const { handlers } = await (await host.api("/v1/handlers")).json();
      const flaky = handlers.find((h: { name: string }) => h.name === "flaky");
      assert.deepEqual([flaky.counts.failed, flaky.counts.retried, flaky.counts.deadLettered, flaky.counts.acked], [3, 2, 1, 0]);
    });

    test("a permanent error skips the remaining attempts", async () => {
      const r = await ingest(host.url, "perm", JSON.stringify({}), "application/json");
      assert.equal(r.status, 202);
      const [dl] = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "DLQ", "dlq.perm");
        return m.length ? m : undefined;
      }, 10_000, "a DLQ entry");
      assert.equal(dl!.value.attempts, 1);
      assert.deepEqual([dl!.value.error.name, dl!.value.error.message], ["PermanentError", "cannot ever work"]);
    });

    test("broken handler modules are refused with a clear error and do not stop the others", async () => {
      const { handlers } = await (await host.api("/v1/handlers")).json();
      const byName = Object.fromEntries(handlers.map((h: { name: string }) => [h.name, h]));
      assert.deepEqual(Object.keys(byName).sort(), ["bad-export", "chain", "echo", "flaky", "perm", "probe", "syntax", "throws"]);
      assert.equal(byName.throws.status, "failed");
      assert.equal(byName.throws.loadError.message, "Handler throws failed to load: Error: broken at import");
      assert.equal(byName.throws.version, null);
      assert.equal(byName["bad-export"].status, "failed");
      assert.equal(byName["bad-export"].loadError.message,
        "Handler bad-export failed to load: TypeError: Invalid handler definition: `handle` must be a function");
      assert.equal(byName.syntax.status, "failed");
      assert.match(byName.syntax.loadError.message, /^Cannot build handler syntax\.ts: .*syntax\.ts:\d+:\d+: /);
      for (const ok of ["echo", "flaky", "perm", "chain", "probe"]) assert.equal(byName[ok].status, "running");
      const ready = await (await fetch(`${host.url}/readyz`)).json();
      assert.deepEqual(ready.handlers, { running: 5, failed: 3, crashing: [] });
    });

    test("ctx.emit chains into another topic, checked against that topic's schema", async () => {
      assert.equal((await ingest(host.url, "chain", JSON.stringify({ to: "e2e", n: 42 }), "application/json")).status, 202);
      const echoed = await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.echo")).find((m) => m.value.n === 42), 10_000, "the chained reading");
      assert.equal(echoed.value.topic, "e2e");
      assert.equal((await ingest(host.url, "chain", JSON.stringify({ to: "e2e", n: "NaN" }), "application/json")).status, 202);
      assert.equal((await ingest(host.url, "chain", JSON.stringify({ to: "nowhere", n: 1 }), "application/json")).status, 202);
      const dls = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "DLQ", "dlq.chain");
        return m.length >= 2 ? m : undefined;
      }, 10_000, "two refused emits in DLQ");
      assert.deepEqual(dls.map((d) => d.value.error.message).sort(), [
        'ctx.emit: no handler consumes topic "nowhere"; known topics: boom, chain, e2e, perm, probe',
        "ctx.emit: the reading does not match the schema of e2e: n: Invalid type: Expected number but received \"NaN\"",
      ]);
    });

    test(`what a worker-tier handler can reach on ${runtime}`, async () => {
      assert.equal((await ingest(host.url, "probe", JSON.stringify({ url: `${host.url}/healthz` }), "application/json")).status, 202);
      const [probe] = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.probe");
        return m.length ? m : undefined;
      }, 10_000, "the probe's report");
      // Deno workers run with every permission denied; Bun's handler process has no TCP (Landlock)
      // for a handler that does not ask for net; Node workers reach the network. The environment is
      // empty everywhere (none of the host's secrets).
      const expected = runtime === "deno" ? { fetch: "NotCapable", env: "NotCapable" } : runtime === "bun" ? { fetch: "TypeError", env: "empty" } : { fetch: "reached", env: "empty" };
      assert.deepEqual(probe!.value, expected);
      const { handlers } = await (await host.api("/v1/handlers")).json();
      assert.equal(handlers.find((h: { name: string }) => h.name === "probe").sandboxed, runtime === "deno");
    });

    test("a hostile 40 KB CBOR body gets 400 and the host stays healthy", async () => {
      const hostile = new Uint8Array(40 * 1024).fill(0x9f);
      const r = await ingest(host.url, "e2e", hostile, "application/cbor");
      assert.equal(r.status, 400);
      assert.equal(r.json.message, "Malformed CBOR at byte 33: nesting deeper than 32");
      const health = await fetch(`${host.url}/healthz`);
      assert.equal(health.status, 200);
    });
  });
}
