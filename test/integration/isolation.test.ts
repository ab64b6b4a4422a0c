import { test } from "node:test";
import assert from "node:assert/strict";
import { ingest, startHost, startNats, streamMessages, waitFor, type Runtime } from "../_harness.ts";

const PLAIN = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "plain",
  schema: v.object({ n: v.number() }),
  async handle(r, ctx) {
    await ctx.publish("plain", { n: r.n, process: typeof process, fetch: typeof fetch, deno: typeof Deno, bun: typeof Bun });
  },
});
`;
const WORKER_ONLY = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "net", permissions: { net: true }, handle() {} });
`;

for (const runtime of ["node", "bun"] as Runtime[]) {
  test(`on ${runtime}, --isolation wasm runs a handler written for the worker tier in the wasm tier, with nothing but ctx`, async () => {
    const nats = await startNats();
    const host = await startHost({ runtime, nats: nats.url, args: ["--isolation", "wasm"], workers: { "plain.ts": PLAIN, "net.ts": WORKER_ONLY } });
    try {
      const { handlers } = await (await host.api("/v1/handlers")).json();
      const plain = handlers.find((h: { name: string }) => h.name === "plain");
      assert.deepEqual([plain.status, plain.isolation, plain.sandboxed, plain.limits.memoryMb], ["running", "wasm", true, 16]);
      const net = handlers.find((h: { name: string }) => h.name === "net");
      assert.equal(net.status, "failed");
      assert.equal(net.loadError.message,
        "Handler net uses `permissions`, which the wasm tier does not offer, and this host runs every handler in the wasm tier (--isolation wasm)");
      const bad = await ingest(host.url, "plain", JSON.stringify({ n: "x" }), "application/json");
      assert.equal(bad.status, 400, "the schema is checked (in QuickJS)");
      assert.equal((await ingest(host.url, "plain", JSON.stringify({ n: 1 }), "application/json")).status, 202);
      const [out] = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.plain");
        return m.length ? m : undefined;
      }, 10_000, "the handler's output");
      assert.deepEqual(out!.value, { n: 1, process: "undefined", fetch: "undefined", deno: "undefined", bun: "undefined" });
    } finally {
      await host.stop();
      await nats.stop();
    }
  });
}
