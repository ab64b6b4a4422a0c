/**
 * /readyz's storage check: a stream past 95 % of its byte limit makes the host not ready, with
 * the stream and its use named, while /healthz stays 200.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ingest, startHost, waitFor } from "../_harness.ts";

// Holds every reading: nothing is acknowledged, so INGEST only grows.
const PARK = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "fill", concurrency: 1, timeoutMs: 600000, async handle() { await new Promise(() => {}); } });
`;

test("a stream past 95 % of its byte limit: /readyz 503 naming it, /healthz 200", async () => {
  // 4 MiB of store: INGEST may hold 2 MiB.
  const host = await startHost({ workers: { "fill.ts": PARK }, args: ["--max-file-store", "4M", "--body-limit", "512K"] });
  try {
    const body = JSON.stringify({ pad: "x".repeat(60_000) });
    let stored = 0;
    for (let i = 0; i < 60; i++) {
      const r = await ingest(host.url, "fill", body, "application/json");
      if (r.status !== 202) break;
      stored++;
    }
    assert.ok(stored >= 30, `stored ${stored} readings of 60 KB`);
    const ready = await waitFor(async () => {
      const r = await fetch(`${host.url}/readyz`);
      const j = await r.json();
      return r.status === 503 && j.reasons?.some((x: string) => /^stream INGEST is \d+ % full/.test(x)) ? j : undefined;
    }, 20_000, "readyz to name the full stream");
    assert.ok(ready.storage.INGEST > 0.95, JSON.stringify(ready.storage));
    assert.equal((await fetch(`${host.url}/healthz`)).status, 200);
  } finally {
    await host.stop();
  }
});
