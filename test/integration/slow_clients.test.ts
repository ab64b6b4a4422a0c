/**
 * Hostile clients: a slowloris (500 connections sending their headers a byte at a time) while a
 * real sensor keeps posting at 50 readings/s must not stop that sensor, on Node, Deno and Bun.
 * Bounded: the attack and the sensor both stop after a fixed time.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { ingest, RUNTIMES, sleep, startHost, startNats, streamMessages, waitFor } from "../_harness.ts";

const H = `import { defineHandler, v } from "outpost/handler";
export default defineHandler({ topic: "steady", schema: v.object({ n: v.number() }), async handle(r, ctx) { await ctx.publish("steady", { n: r.n }); } });
`;

for (const runtime of RUNTIMES) {
  test(`on ${runtime}: 500 slowloris connections do not stop a sensor posting 50 readings/s`, async () => {
    const nats = await startNats();
    const host = await startHost({ runtime, nats: nats.url, workers: { "steady.ts": H } });
    const port = Number(new URL(host.url).port);
    const sockets: Socket[] = [];
    let attacking = true;
    try {
      // 500 connections that each start a request and then send one header byte every 200 ms.
      for (let i = 0; i < 500; i++) {
        const s = connect(port, "127.0.0.1");
        s.on("error", () => {});
        s.write(`POST /v1/ingest/steady HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-${i}: `);
        sockets.push(s);
      }
      const drip = (async () => {
        while (attacking) {
          for (const s of sockets) if (!s.destroyed) s.write("a");
          await sleep(200);
        }
      })();
      await sleep(500);
      const statuses: number[] = [];
      const t0 = Date.now();
      for (let n = 0; n < 150; n++) {
        // 50/s for 3 s, paced from the start so a slow answer does not lower the rate.
        const due = t0 + n * 20;
        if (Date.now() < due) await sleep(due - Date.now());
        const r = await ingest(host.url, "steady", JSON.stringify({ n }), "application/json").catch((e) => ({ status: 0, error: e }));
        statuses.push(r.status);
      }
      attacking = false;
      await drip;
      const ok = statuses.filter((s) => s === 202).length;
      const elapsed = (Date.now() - t0) / 1000;
      const open = sockets.filter((s) => !s.destroyed).length;
      console.log(`${runtime}: ${ok}/150 readings 202 in ${elapsed.toFixed(1)} s under 500 slow connections (${open} still open)`);
      assert.equal(ok, 150, `statuses: ${[...new Set(statuses)].join(",")}`);
      const out = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.steady");
        return m.length >= 150 ? m : undefined;
      }, 30_000, "150 outputs");
      assert.equal(out.length, 150);
    } finally {
      attacking = false;
      for (const s of sockets) s.destroy();
      await host.stop();
      await nats.stop();
    }
  });
}
