import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { decodeCbor, encodeCbor } from "../../src/codec/cbor.ts";
import { bundles, makeBundle, makeKey, otaHandler, type TestKey } from "../_bundles.ts";
import { startHub, type Hub } from "../_hub.ts";
import {
  hostCommand, ingest, join, outpost, sleep, startHost, streamMessages, tempDir, waitFor, writeFile, type TestHost,
} from "../_harness.ts";

/** `outpost publish` as a real process (the single-file build). */
async function publish(hub: Hub, bytes: Uint8Array, extra: string[] = []): Promise<string> {
  const file = join(await tempDir("outpost-publish-"), "b.outpost");
  await writeFile(file, bytes);
  const [cmd, ...pre] = hostCommand("node");
  const p = spawn(cmd!, [...pre, "publish", file, "--nats", hub.url, ...extra], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  p.stdout!.on("data", (d) => (out += d));
  p.stderr!.on("data", (d) => (out += d));
  const code = await new Promise((r) => p.once("exit", r));
  assert.equal(code, 0, out);
  return out;
}

/** Wait until a host's `GET /v1/bundles` satisfies `ok`. */
async function until(host: TestHost, ok: (b: any) => boolean, what: string, ms = 30_000): Promise<any> {
  return await waitFor(async () => {
    const b = await bundles(host.url);
    return ok(b) ? b : undefined;
  }, ms, what);
}

/** Post one reading `{n}` and wait until the device's OUTBOX (read from the hub through the device's domain) has its result. */
async function handledBy(hub: Hub, host: TestHost, domain: string, n: number): Promise<string> {
  const r = await ingest(host.url, "ota", JSON.stringify({ n }), "application/json");
  assert.equal(r.status, 202, JSON.stringify(r.json));
  const jsm = await jetstreamManager(hub.nc, { domain });
  const m = await waitFor(async () => (await streamMessages(jsm, "OUTBOX", "out.ota")).find((x) => x.value.n === n), 20_000, `reading ${n} handled on ${domain}`);
  return m.value.v;
}

describe("fleet path: one publish to the hub updates every device through leafnodes", () => {
  let hub: Hub;
  let dev: TestKey;
  const domains = ["edge-a", "edge-b"];
  const hosts: TestHost[] = [];
  const args = (domain: string) => [
    "--admin-token", "tok", "--trust", dev.pubFile, "--nats-domain", domain, "--nats-leafnode", hub.leafUrl, "--fleet", "hub",
    "--probation-ms", "1000", "--probation-messages", "1000", "--max-bundle-size", "1M", "--hub-every", "1s",
  ];
  before(async () => {
    hub = await startHub();
    dev = await makeKey("dev");
    for (const d of domains) hosts.push(await startHost({ workers: { "ota.ts": otaHandler("workers") }, args: args(d) }));
  });
  after(async () => {
    for (const h of hosts) await h.stop().catch(() => {});
    await hub?.stop();
  });

  test("both devices install the published release; each device's streams stay its own", async () => {
    const t0 = Date.now();
    const out = await publish(hub, await makeBundle({ release: 10, handlers: { "ota.ts": otaHandler("r10") }, keys: [dev] }));
    assert.match(out, /ota 1\.0\.10 \(release 10\).*\n {2}object outpost-bundles\/ota-10\.bundle; outpost-fleet\/desired revision \d+/);
    for (const h of hosts) {
      const b = await until(h, (x) => x.active.release === 10 && x.fleet.lastOutcome?.release === 10, "release 10 active");
      assert.equal(b.fleet.lastOutcome.result, "installed");
      assert.equal(b.fleet.desired.object, "ota-10.bundle");
      assert.deepEqual(b.active.signers, [dev.id]);
    }
    console.log(`publish to both devices active: ${Date.now() - t0} ms`);
    assert.equal(await handledBy(hub, hosts[0]!, "edge-a", 1001), "r10");
    assert.equal(await handledBy(hub, hosts[1]!, "edge-b", 2002), "r10");
    // A reading of one device never reaches the other's streams, and the hub holds no INGEST of its own.
    const ns = async (d: string) => (await streamMessages(await jetstreamManager(hub.nc, { domain: d }), "OUTBOX", "out.ota")).map((m) => m.value.n);
    assert.deepEqual(await ns("edge-a"), [1001]);
    assert.deepEqual(await ns("edge-b"), [2002]);
    await assert.rejects((await jetstreamManager(hub.nc)).streams.info("INGEST"), /stream not found/);
    for (const h of hosts) await until(h, (x) => x.probation === null, "release 10 committed", 10_000);
  });

  test("a tampered bundle and a lower release are refused on every device, once, with the reason; release 10 stays", async () => {
    const box = decodeCbor(await makeBundle({ release: 20, handlers: { "ota.ts": otaHandler("evil") }, keys: [dev] })) as { files: Uint8Array[] };
    const f = box.files[0]!;
    f[10] = f[10]! ^ 1;
    await publish(hub, encodeCbor(box));
    for (const h of hosts) {
      const b = await until(h, (x) => x.fleet.lastOutcome?.release === 20, "release 20 refused");
      assert.equal(b.fleet.lastOutcome.result, "refused");
      assert.equal(b.fleet.lastOutcome.error, "bad_hash");
      assert.match(b.fleet.lastOutcome.message, /^Cannot activate bundle ota 1\.0\.20 \(release 20\): file ota\.mjs does not match its SHA-256 in the manifest$/);
      assert.equal(b.active.release, 10);
    }
    await publish(hub, await makeBundle({ release: 5, handlers: { "ota.ts": otaHandler("old") }, keys: [dev] }));
    for (const h of hosts) {
      const b = await until(h, (x) => x.fleet.lastOutcome?.release === 5, "release 5 refused");
      assert.equal(b.fleet.lastOutcome.error, "stale_release");
      assert.match(b.fleet.lastOutcome.message, /release 5 is not above the active release 10/);
      assert.equal(b.active.release, 10);
    }
    await sleep(1_500);
    for (const h of hosts) {
      assert.equal(h.logs().match(/fleet: Cannot activate bundle ota 1\.0\.20/g)?.length, 1, "the tampered release is refused once, not retried");
    }
    assert.equal(await handledBy(hub, hosts[0]!, "edge-a", 1002), "r10");
  });

  test("devices keep serving while the hub is down and install the next release once it is back; a restarted device reads the desired release", async () => {
    await hub.kill();
    await sleep(1_000);
    for (const h of hosts) {
      assert.equal((await fetch(`${h.url}/healthz`)).status, 200);
      assert.equal((await ingest(h.url, "ota", JSON.stringify({ n: 7 }), "application/json")).status, 202);
    }
    const a = hosts[0]!;
    assert.equal(await a.stop(), 0);
    await hub.start();
    await publish(hub, await makeBundle({ release: 30, handlers: { "ota.ts": otaHandler("r30") }, keys: [dev] }));
    await until(hosts[1]!, (x) => x.active.release === 30, "release 30 on the device that stayed up");
    hosts[0] = await startHost({ dataDir: a.dataDir, workersDir: a.workersDir, args: args("edge-a") });
    const b = await until(hosts[0], (x) => x.active.release === 30, "release 30 on the restarted device");
    assert.equal(b.previous.release, 10);
    assert.equal(await handledBy(hub, hosts[0], "edge-a", 1003), "r30");
    assert.equal(await handledBy(hub, hosts[1]!, "edge-b", 2003), "r30");
  });

  test("a record whose object does not match it, or that is above --max-bundle-size, is refused before installing", async () => {
    const kv = await new Kvm(jetstream(hub.nc)).open("outpost-fleet");
    const base = { name: "ota", version: "1.0.40", bucket: "outpost-bundles", object: "ota-30.bundle", publishedAt: new Date().toISOString() };
    const real = (await kv.get("desired"))!.json<{ size: number }>();
    await kv.put("desired", JSON.stringify({ ...base, release: 40, size: real.size, sha256: "0".repeat(64) }));
    for (const h of hosts) {
      const b = await until(h, (x) => x.fleet.lastOutcome?.release === 40, "release 40 refused");
      assert.equal(b.fleet.lastOutcome.error, "bad_hash");
      assert.match(b.fleet.lastOutcome.message, /^Cannot accept fleet bundle ota 1\.0\.40 \(release 40\): object ota-30\.bundle does not match the SHA-256 of the record$/);
    }
    await kv.put("desired", JSON.stringify({ ...base, release: 41, size: 2 * 1024 * 1024, sha256: "0".repeat(64) }));
    for (const h of hosts) {
      const b = await until(h, (x) => x.fleet.lastOutcome?.release === 41, "release 41 refused");
      assert.equal(b.fleet.lastOutcome.error, "too_large");
      assert.match(b.fleet.lastOutcome.message, /the record says 2097152 bytes, above the limit of 1048576 bytes \(--max-bundle-size\)$/);
      assert.equal(b.active.release, 30);
    }
  });

  test("a record asking for a canary: each device runs it on a share, promotes it or rolls it back, and the hub sees each device's canary state", async () => {
    const load = async (n0: number) => {
      for (const [i, h] of hosts.entries()) for (let n = 0; n < 40; n++) assert.equal((await ingest(h.url, "ota", JSON.stringify({ n: n0 + i * 1000 + n }), "application/json")).status, 202);
    };
    const out = await publish(hub, await makeBundle({ release: 50, handlers: { "ota.ts": otaHandler("r50") }, keys: [dev] }), ["--canary", "50", "--canary-readings", "5"]);
    assert.match(out, /as a canary: 50 % of the readings for up to 10m or 5 readings/);
    for (const h of hosts) await until(h, (x) => x.canary?.release === 50 && x.canary.state === "running", "release 50 running as a canary");
    await load(50_000);
    for (const h of hosts) {
      const b = await until(h, (x) => x.active.release === 50 && x.fleet.lastOutcome?.release === 50, "release 50 promoted").catch(async (e) => {
        const jsm = await jetstreamManager(hub.nc, { domain: domains[hosts.indexOf(h)]! });
        for await (const ci of jsm.consumers.list("INGEST")) console.log("CONSUMER", JSON.stringify({ name: ci.name, pending: ci.num_pending, ackPending: ci.num_ack_pending, waiting: ci.num_waiting, redelivered: ci.num_redelivered, delivered: ci.delivered, ackFloor: ci.ack_floor, filter: ci.config.filter_subject ?? ci.config.filter_subjects }));
        console.log("STREAM", JSON.stringify((await jsm.streams.info("INGEST")).state));
        console.log(JSON.stringify(await bundles(h.url)), JSON.stringify((await (await h.api("/v1/handlers")).json()).handlers.map((x: any) => [x.name, x.status, x.version, x.inFlight, x.counts])), h.logs().slice(-3000));
        throw e;
      });
      assert.equal(b.fleet.lastOutcome.result, "installed");
      assert.equal(b.canary.state, "promoted");
    }
    const status = async (state: string, release: number) => await waitFor(async () => {
      const r = await outpost(["hub", "status", "--nats", hub.url, "--json"], 30_000);
      assert.equal(r.code, 0, r.out);
      const rows = (JSON.parse(r.out) as { devices: { device: string; report: any }[] }).devices;
      return domains.every((d) => rows.find((x) => x.device === d)?.report?.canary?.state === state && rows.find((x) => x.device === d)?.report?.release.active === release) ? rows : undefined;
    }, 20_000, `hub status: both devices' canary ${state}`);
    await status("promoted", 50);
    const prom = await outpost(["hub", "status", "--nats", hub.url, "--prometheus"], 30_000);
    for (const d of domains) {
      assert.match(prom.out, new RegExp(`outpost_hub_device_canary\\{device="${d}",release="50",state="promoted"\\} 1`));
      assert.match(prom.out, new RegExp(`outpost_hub_device_release\\{device="${d}"\\} 50`));
    }
    // Past the budget on every device: rolled back, refused with the reason, release 50 stays.
    const bad = otaHandler("r60").replace("await ctx.publish", 'if (r.n % 10 < 3) throw new Error("r60 cannot take " + r.n);\n    await ctx.publish');
    await publish(hub, await makeBundle({ release: 60, handlers: { "ota.ts": bad }, keys: [dev] }), ["--canary", "50", "--canary-readings", "50"]);
    for (const h of hosts) await until(h, (x) => x.canary?.release === 60 && x.canary.state === "running", "release 60 running as a canary");
    await load(60_000);
    for (const h of hosts) {
      const b = await until(h, (x) => x.fleet.lastOutcome?.release === 60, "release 60 rolled back").catch(async (e) => {
        console.log(JSON.stringify(await bundles(h.url)), JSON.stringify((await (await h.api("/v1/handlers")).json()).handlers.map((x: any) => [x.name, x.status, x.version, x.inFlight, x.counts])), h.logs().slice(-3000));
        throw e;
      });
      assert.equal(b.fleet.lastOutcome.result, "refused");
      assert.equal(b.fleet.lastOutcome.error, "canary_rolled_back");
      assert.match(b.fleet.lastOutcome.message, /the canary was rolled back: ota: the canary's error rate/);
      assert.equal(b.active.release, 50);
    }
    const text = await status("rolled back", 50);
    assert.ok(text.every((r) => r.report.canary.release === 60));
  });
});
