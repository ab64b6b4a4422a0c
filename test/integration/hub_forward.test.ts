/**
 * Store-and-forward to a hub with nats-server itself: `outpost hub attach` makes hub streams that
 * source each device's OUTBOX through its JetStream domain over the leafnode. Readings handled
 * while the hub is down (and a device restarted meanwhile) reach the hub once, in order; urgent
 * results cross by a source of their own (on loopback both sources finish together: the link is
 * not the bottleneck here, see docs/hub.md); an outage past OUTBOX's limit loses exactly the oldest
 * results past it, and the device said so (alarm, metric, log) before it happened.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { startHub, type Hub } from "../_hub.ts";
import { embeddedJsm, ingest, outpost, sleep, startHost, streamMessages, waitFor, type TestHost } from "../_harness.ts";

const HANDLER = `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "sf",
  schema: v.object({ n: v.number(), alert: v.optional(v.boolean()) }),
  concurrency: 8,
  async handle(r, ctx) {
    await ctx.publish("sf", { n: r.n });
    if (r.alert) await ctx.publish("alerts.sf", { n: r.n });
  },
});
`;

/** Post readings n0 … n0+count-1 in JSON arrays of 100; every 100th is an alert. */
async function post(host: TestHost, n0: number, count: number, alerts = true): Promise<void> {
  for (let i = 0; i < count; i += 100) {
    const batch = Array.from({ length: Math.min(100, count - i) }, (_, k) => ({ n: n0 + i + k, ...(alerts && (n0 + i + k) % 100 === 0 ? { alert: true } : {}) }));
    const r = await ingest(host.url, "sf", JSON.stringify(batch), "application/json");
    assert.equal(r.status, 202, JSON.stringify(r.json));
  }
}

async function count(jsm: JetStreamManager, stream: string): Promise<number> {
  try {
    return (await jsm.streams.info(stream)).state.messages;
  } catch {
    return -1;
  }
}

/** The `n` of every message of a stream, in stream order, by subject. */
async function ns(jsm: JetStreamManager, stream: string, subject: string): Promise<number[]> {
  return (await streamMessages(jsm, stream, subject)).map((m) => m.value.n as number);
}

describe("store-and-forward: devices' OUTBOX sourced by a hub through leafnodes", () => {
  let hub: Hub;
  const hosts: Record<string, TestHost> = {};
  const args = (d: string, extra: string[] = []) => [
    "--admin-token", "tok", "--nats-domain", d, "--nats-leafnode", hub.leafUrl, "--hub", "hub", "--hub-every", "500ms", "--hub-alarm-after", "2s", ...extra,
  ];
  /** The hub's JetStream, once it answers again after a restart. */
  const hubJsm = () => waitFor(async () => await jetstreamManager(hub.nc, { timeout: 2_000 }), 20_000, "the hub's JetStream");
  const device = async (d: string) => {
    const { nc, jsm } = await embeddedJsm(hosts[d]!.dataDir);
    return { jsm, close: () => nc.close() };
  };
  const attach = async (d: string, extra: string[] = []) => {
    const r = await outpost(["hub", "attach", "--nats", hub.url, "--device", d, ...extra], 30_000);
    assert.equal(r.code, 0, r.out);
    return r.out;
  };
  before(async () => {
    hub = await startHub();
    for (const d of ["edge-a", "edge-b"]) hosts[d] = await startHost({ workers: { "sf.ts": HANDLER }, args: args(d) });
  });
  after(async () => {
    for (const h of Object.values(hosts)) await h.stop().catch(() => {});
    await hub?.stop();
  });

  test("5,000 readings per device while the hub is down for 20 s, one device restarted meanwhile: the hub holds each result once, in order", async () => {
    const out = await attach("edge-a", ["--urgent", "out.alerts.>"]);
    assert.match(out, /^OUTBOX_edge-a: created, sources OUTBOX of device edge-a through \$JS\.edge-a\.API\nURGENT_edge-a: created, sources OUTBOX \(out\.alerts\.>\) of device edge-a/);
    await attach("edge-b", ["--urgent", "out.alerts.>"]);
    const hjsm = await jetstreamManager(hub.nc);
    for (const d of ["edge-a", "edge-b"]) await post(hosts[d]!, 0, 100);
    for (const d of ["edge-a", "edge-b"]) await waitFor(async () => (await count(hjsm, `OUTBOX_${d}`)) === 101 || undefined, 20_000, `the hub copies ${d}'s first results`);
    await sleep(1_000); // a report after the copy: the devices know the hub has seen them

    await hub.kill();
    const down = Date.now();
    await post(hosts["edge-a"]!, 1_000, 2_500);
    await post(hosts["edge-b"]!, 1_000, 5_000);
    // edge-a restarts while the hub is away, then takes the rest.
    const a = hosts["edge-a"]!;
    assert.equal(await a.stop(), 0);
    hosts["edge-a"] = await startHost({ dataDir: a.dataDir, workersDir: a.workersDir, args: args("edge-a") });
    await post(hosts["edge-a"]!, 3_500, 2_500);
    const want = 101 + 5_000 + 50;
    for (const d of ["edge-a", "edge-b"]) {
      const dev = await device(d);
      await waitFor(async () => (await count(dev.jsm, "OUTBOX")) === want || undefined, 30_000, `${d} handled every reading`);
      await dev.close();
    }
    // The devices know the hub is away.
    const m = await waitFor(async () => {
      const t = await (await hosts["edge-b"]!.api("/metrics")).text();
      const s = Number(/outpost_hub_unreached_seconds\{hub="hub"\} ([\d.]+)/.exec(t)?.[1] ?? 0);
      return s >= 3 ? t : undefined;
    }, 10_000, "edge-b's hub_unreached_seconds");
    assert.match(m, /outpost_outbox_uncopied_results\{hub="hub"\} 5050/);
    await sleep(Math.max(0, 20_000 - (Date.now() - down)));

    await hub.start();
    const up = Date.now();
    const hjsm2 = await hubJsm();
    const done: Record<string, number> = {};
    await waitFor(async () => {
      for (const d of ["edge-a", "edge-b"]) {
        if (!done[`OUTBOX_${d}`] && (await count(hjsm2, `OUTBOX_${d}`)) === want) done[`OUTBOX_${d}`] = Date.now() - up;
        if (!done[`URGENT_${d}`] && (await count(hjsm2, `URGENT_${d}`)) === 51) done[`URGENT_${d}`] = Date.now() - up;
      }
      return Object.keys(done).length === 4 || undefined;
    }, 45_000, "the hub copies what the devices stored during the outage");
    console.log(`outage ${Math.round((up - down) / 1000)} s, 5,050 results per device behind; caught up after the hub returned in (ms): ${JSON.stringify(done)}`);
    for (const d of ["edge-a", "edge-b"]) {
      const dev = await device(d);
      const local = await ns(dev.jsm, "OUTBOX", "out.sf");
      await dev.close();
      const copied = await ns(hjsm2, `OUTBOX_${d}`, "out.sf");
      assert.equal(copied.length, 5_100);
      assert.deepEqual(copied, local, `${d}: every result once, in the device's order`);
      assert.equal(new Set(copied).size, copied.length);
      assert.deepEqual(await ns(hjsm2, `URGENT_${d}`, "out.alerts.sf"), [0, ...Array.from({ length: 50 }, (_, i) => 1_000 + i * 100)]);
    }
    // The hub's view: nothing behind, recent reports.
    const st = await waitFor(async () => {
      const r = await outpost(["hub", "status", "--nats", hub.url, "--json"], 30_000);
      const rows = (JSON.parse(r.out) as { devices: { device: string; behind: { results: number }; lastReportAgeSeconds: number; report: any }[] }).devices;
      return rows.length === 2 && rows.every((x) => x.behind.results === 0 && x.lastReportAgeSeconds < 5 && x.report.outbox.uncopied === 0) ? rows : undefined;
    }, 20_000, "hub status: both devices caught up");
    assert.deepEqual(st.map((x) => x.device), ["edge-a", "edge-b"]);
    const text = await outpost(["hub", "status", "--nats", hub.url], 30_000);
    assert.match(text.out, /^edge-a: last report [\d.]+ s ago; runs its --workers directory; behind 0 results/m);
    assert.match(text.out, /^ {2}URGENT_edge-a: 51 messages, \d+ bytes; lag 0; last activity/m);
  });

  test("an outage past OUTBOX's limit loses exactly the oldest results past it, and the device warned before it happened", async () => {
    hosts["edge-c"] = await startHost({ workers: { "sf.ts": HANDLER }, args: args("edge-c", ["--outbox-max-msgs", "1000"]) });
    await attach("edge-c");
    const hjsm = await jetstreamManager(hub.nc);
    await post(hosts["edge-c"]!, 0, 10, false);
    await waitFor(async () => (await count(hjsm, "OUTBOX_edge-c")) === 10 || undefined, 20_000, "the hub copies edge-c's first results");
    await sleep(1_000); // a report after the copy: the device knows the hub has seen sequence 10
    await hub.kill();
    await post(hosts["edge-c"]!, 10, 850, false);
    const dev = await device("edge-c");
    await waitFor(async () => (await count(dev.jsm, "OUTBOX")) === 860 || undefined, 20_000, "edge-c handled 850 more");
    // 850 uncopied of 1,000 kept: the alarm sounds while nothing is lost yet.
    const ready = await waitFor(async () => {
      const j = await (await fetch(`${hosts["edge-c"]!.url}/readyz`)).json() as { warnings?: string[] };
      return j.warnings?.some((w) => w.startsWith("hub gap alarm")) ? j : undefined;
    }, 15_000, "the gap alarm in /readyz");
    assert.match(ready.warnings!.find((w) => w.startsWith("hub gap alarm"))!, /850 results wait for it, 85 % of what OUTBOX keeps .*past 100 % the oldest of them are dropped/);
    assert.equal((await dev.jsm.streams.info("OUTBOX")).state.first_seq, 1, "nothing dropped yet");
    assert.match(await (await hosts["edge-c"]!.api("/metrics")).text(), /outpost_outbox_at_risk_ratio\{hub="hub"\} 0\.85/);
    assert.match(hosts["edge-c"]!.logs(), /WARN {2}\[hub\] hub: gap alarm: the hub has not been reached for \d+ s: 850 results wait for it/);
    // 2,150 more: OUTBOX keeps the last 1,000 of the 3,000 the hub has not seen.
    await post(hosts["edge-c"]!, 860, 2_150, false);
    await waitFor(async () => (await dev.jsm.streams.info("OUTBOX")).state.last_seq === 3_010 || undefined, 20_000, "edge-c handled 2,150 more");
    assert.equal((await dev.jsm.streams.info("OUTBOX")).state.messages, 1_000);
    await dev.close();
    await hub.start();
    const hjsm2 = await hubJsm();
    await waitFor(async () => (await count(hjsm2, "OUTBOX_edge-c")) === 1_010 || undefined, 30_000, "the hub copies what is left");
    await sleep(1_000);
    const copied = await ns(hjsm2, "OUTBOX_edge-c", "out.sf");
    assert.deepEqual(copied, [...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 1_000 }, (_, i) => 2_010 + i)],
      "the first 10, then the last 1,000: the 2,000 oldest of the outage are lost, as docs/hub.md computes");
  });

  test("an uplink budget holds the bulk back after an outage while urgent results cross first; each result once, in order", async () => {
    const rate = 8 * 1024;
    hosts["edge-d"] = await startHost({ workers: { "sf.ts": HANDLER }, args: args("edge-d", ["--uplink-rate", "8K", "--uplink-urgent", "out.alerts.>"]) });
    const hjsm = await hubJsm();
    await post(hosts["edge-d"]!, 0, 10, false);
    await waitFor(async () => (await count(hjsm, "OUTBOX_edge-d")) === 10 || undefined, 20_000, "edge-d forwards its first results");
    await hub.kill();
    await post(hosts["edge-d"]!, 100, 2_000);
    const dev = await device("edge-d");
    await waitFor(async () => (await count(dev.jsm, "OUTBOX")) === 2_030 || undefined, 20_000, "edge-d handled 2,000 more");
    const sentBefore = Number(/outpost_uplink_sent_bytes ([\d.]+)/.exec(await (await hosts["edge-d"]!.api("/metrics")).text())?.[1]);
    await hub.start();
    const up = Date.now();
    const hjsm2 = await hubJsm();
    let urgentAt = 0;
    let bulkAt = 0;
    await waitFor(async () => {
      if (!urgentAt && (await count(hjsm2, "URGENT_edge-d")) === 20) urgentAt = Date.now() - up;
      if (!bulkAt && (await count(hjsm2, "OUTBOX_edge-d")) === 2_030) bulkAt = Date.now() - up;
      return (urgentAt && bulkAt) || undefined;
    }, 45_000, "edge-d's results on the hub");
    const sent = Number(/outpost_uplink_sent_bytes ([\d.]+)/.exec(await (await hosts["edge-d"]!.api("/metrics")).text())?.[1]) - sentBefore;
    const bulkBytes = sent - 20 * "uplink.edge-d.urgent.out.alerts.sf".length - 20 * 8;
    const floorMs = ((bulkBytes - rate) / rate) * 1000; // the budget, less the one second it may save up
    console.log(`uplink at 8 KiB/s after the hub returned: 20 urgent results on the hub after ${urgentAt} ms, 2,020 bulk results (${sent} bytes in all) after ${bulkAt} ms; the budget allows them no sooner than ${Math.round(floorMs)} ms`);
    assert.ok(urgentAt < bulkAt / 2, `urgent results crossed first (${urgentAt} ms vs ${bulkAt} ms)`);
    assert.ok(bulkAt >= floorMs * 0.9, `the budget held the bulk back (${bulkAt} ms, at least ${Math.round(floorMs)} ms)`);
    const local = await ns(dev.jsm, "OUTBOX", "out.sf");
    await dev.close();
    const copied = await ns(hjsm2, "OUTBOX_edge-d", "uplink.edge-d.bulk.out.sf");
    assert.deepEqual(copied, local, "every result once, in the device's order");
    assert.deepEqual(await ns(hjsm2, "URGENT_edge-d", "uplink.edge-d.urgent.out.alerts.sf"), Array.from({ length: 20 }, (_, i) => 100 + i * 100));
    const st = await waitFor(async () => {
      const r = await outpost(["hub", "status", "--nats", hub.url, "--json"], 30_000);
      const row = (JSON.parse(r.out) as { devices: { device: string; behind: { results: number }; streams: { stream: string }[] }[] }).devices.find((x) => x.device === "edge-d");
      return row?.behind.results === 0 ? row : undefined;
    }, 20_000, "hub status: edge-d caught up");
    assert.deepEqual(st.streams.map((x) => x.stream), ["OUTBOX_edge-d", "URGENT_edge-d"]);
  });
});
