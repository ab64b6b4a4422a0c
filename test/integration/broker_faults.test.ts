/**
 * What the host does when its own nats-server and store misbehave: a damaged store (findings 5),
 * a full disk (7), a paused server (8) and a shutdown with JetStream wedged (14).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { embeddedJsm, embeddedPid, ingest, join, sleep, startHost, tempDir, waitFor, type TestHost } from "../_harness.ts";

// Handles one reading every ten seconds: what is ingested stays in INGEST for the test's length.
const SLOW = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "slow", rateLimit: { perSecond: 0.1, burst: 1 }, async handle() {} });
`;
const TOKEN = "t0ken-for-tests";

async function ready(host: TestHost): Promise<{ status: number; json: any }> {
  const r = await fetch(`${host.url}/readyz`);
  return { status: r.status, json: await r.json() };
}

async function fill(host: TestHost, requests: number, size = 100): Promise<number> {
  let stored = 0;
  for (let i = 0; i < requests; i++) {
    const r = await ingest(host.url, "slow", JSON.stringify(Array.from({ length: size }, (_, n) => ({ i, n }))), "application/json");
    assert.equal(r.status, 202, JSON.stringify(r.json));
    stored += r.json.accepted;
  }
  return stored;
}

test("finding 5: a store damaged while the host was stopped is a loud error, a /readyz reason and a metric", async () => {
  const dataDir = await tempDir();
  const workersDir = await tempDir("outpost-workers-");
  const args = ["--admin-token", TOKEN];
  const first = await startHost({ dataDir, workersDir, workers: { "slow.ts": SLOW }, args });
  await fill(first, 20);
  assert.equal(await first.stop(), 0);
  // A clean restart of an undamaged store is no alarm.
  const second = await startHost({ dataDir, workersDir, args });
  assert.deepEqual((await ready(second)).json.store, { ok: true, problems: [] });
  assert.equal(await second.stop(), 0);
  const marks = JSON.parse(await readFile(join(dataDir, "store-marks.json"), "utf8"));
  assert.equal(marks.INGEST.clean, true);
  assert.ok(marks.INGEST.messages >= 1990, `INGEST held ${marks.INGEST.messages} at the clean stop`);

  const blk = join(dataDir, "jetstream", "jetstream", "$G", "streams", "INGEST", "msgs", "1.blk");
  await truncate(blk, Math.floor((await stat(blk)).size / 2));
  const third = await startHost({ dataDir, workersDir, args });
  try {
    const r = await ready(third);
    assert.equal(r.status, 503);
    assert.equal(r.json.store.ok, false);
    const p = r.json.store.problems[0];
    assert.equal(p.stream, "INGEST");
    assert.ok(p.lost > 500, `${p.lost} messages reported lost`);
    assert.match(p.message, /^stream INGEST (went back from sequence \d+ to \d+|holds \d+ messages, \d+ fewer than at the clean stop)/);
    assert.deepEqual(r.json.reasons, [p.message]);
    assert.match(third.logs(), /ERROR \[store\] STORE INTEGRITY: stream INGEST/);
    const metrics = await (await third.api("/metrics")).text();
    assert.match(metrics, new RegExp(`^outpost_store_lost_messages\\{stream="INGEST"\\} ${p.lost}$`, "m"));
    assert.match(metrics, /^outpost_store_lost_messages\{stream="OUTBOX"\} 0$/m);
    // Only the operator clears it.
    assert.equal((await fetch(`${third.url}/v1/store/acknowledge`, { method: "POST" })).status, 401);
    const ack = await fetch(`${third.url}/v1/store/acknowledge`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(ack.status, 200);
    assert.equal((await ack.json()).acknowledged[0].stream, "INGEST");
    assert.equal((await ready(third)).status, 200);
  } finally {
    await third.stop();
  }
  // Damaged bytes leave the counts as they were (nats-server 2.9.10), and its consumers step over
  // them in silence: seen as messages that no consumer owes.
  const b = await readFile(blk);
  for (let i = 1; i <= 20; i++) {
    const at = Math.floor((i / 21) * b.length);
    b[at] = b[at]! ^ 0xff;
  }
  await writeFile(blk, b);
  await writeFile(join(workersDir, "slow.ts"), SLOW.replace("rateLimit: { perSecond: 0.1, burst: 1 }, ", ""));
  const fourth = await startHost({ dataDir, workersDir, args, env: { OUTPOST_STORE_CHECK_MS: "500" } });
  try {
    // Which finding the damage gives depends on where the flipped bytes land: messages no consumer
    // delivers (INGEST), or a block nats-server reports it cannot read (stream "?"). Either is loud.
    const r = await waitFor(async () => {
      const x = await ready(fourth);
      return x.status === 503 && x.json.store.problems.length ? x : undefined;
    }, 15_000, "readyz 503 for the damaged store");
    const problems = r.json.store.problems as { stream: string; lost: number; message: string }[];
    const p = problems.find((q) => q.stream === "INGEST") ?? problems[0]!;
    const metrics = await (await fourth.api("/metrics")).text();
    if (p.stream === "INGEST") {
      assert.match(p.message, /^stream INGEST holds \d+ messages but its consumers owe only 0: \d+ stored messages cannot be delivered \(damaged blocks nats-server steps over\)$/);
      assert.match(metrics, new RegExp(`^outpost_store_lost_messages\\{stream="INGEST"\\} ${p.lost}$`, "m"));
    } else {
      assert.match(p.message, /^nats-server cannot read a stored message/);
      assert.match(metrics, /^outpost_store_read_errors_total [1-9]\d*$/m);
    }
    assert.ok(r.json.reasons.includes(p.message));
  } finally {
    await fourth.stop();
  }
});

test("findings 8 and 14: a paused nats-server is seen by /readyz, refused at once, and SIGTERM still ends the host", async () => {
  const host = await startHost({ workers: { "slow.ts": SLOW }, args: ["--shutdown-timeout", "4000"] });
  const pid = await embeddedPid(host.dataDir);
  let paused = false;
  try {
    const { nc, jsm } = await embeddedJsm(host.dataDir);
    const before = (await jsm.streams.info("INGEST")).state.last_seq;
    process.kill(pid, "SIGSTOP");
    paused = true;
    // Sent before the probe noticed: the broker never answers, so the outcome is unknown, and said so.
    const early = await ingest(host.url, "slow", "{}", "application/json");
    assert.equal(early.status, 503);
    assert.equal(early.json.error, "outcome_unknown");
    assert.deepEqual(early.json.unknown, [0]);
    assert.match(early.json.message, /may or may not have been stored\. Resend them with an Idempotency-Key header next time/);
    const r = await waitFor(async () => {
      const x = await ready(host);
      return x.status === 503 ? x : undefined;
    }, 10_000, "readyz 503");
    assert.equal(r.json.broker, false);
    assert.match(r.json.reasons[0], /^nats-server has not answered for \d+ s$/);
    assert.equal((await fetch(`${host.url}/healthz`)).status, 200);
    const refused = await ingest(host.url, "slow", "{}", "application/json");
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error, "broker_unavailable");
    assert.match(refused.json.message, /^nats-server has not answered for \d+ s; nothing was stored$/);
    process.kill(pid, "SIGCONT");
    paused = false;
    await waitFor(async () => (await ready(host)).status === 200, 10_000, "readyz 200 again");
    // The early reading was in fact stored (the server had it before it paused, or took it after);
    // the refused one was not.
    const after = (await jsm.streams.info("INGEST")).state.last_seq;
    assert.ok(after - before <= 1, `${after - before} readings stored; only the early one may be`);
    assert.equal((await ingest(host.url, "slow", "{}", "application/json")).status, 202);
    await nc.close();

    // Shutdown with JetStream wedged: bounded by --shutdown-timeout.
    process.kill(pid, "SIGSTOP");
    paused = true;
    const t0 = Date.now();
    const code = await host.stop("SIGTERM");
    assert.equal(code, 1);
    assert.ok(Date.now() - t0 < 14_000, "the host ended before the harness had to kill it");
    assert.match(host.logs(), /shutdown did not finish within 4000 ms \(--shutdown-timeout\); exiting anyway/);
  } finally {
    if (paused) process.kill(pid, "SIGCONT");
    try {
      process.kill(pid, "SIGKILL");
    } catch { /* gone */ }
    await host.stop("SIGKILL");
  }
});

/** A small tmpfs for the data directory (root only; elsewhere the test is skipped with the reason). */
function mountTmpfs(dir: string, size: string): string | undefined {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
    return undefined;
  } catch (e) {
    return `cannot mount a tmpfs here (${(e as Error).message.split("\n")[0]}); the disk-full test needs root`;
  }
}

test("finding 7: a full disk is answered 507 at once, /readyz says why, nothing acknowledged is lost, and freeing space recovers", async (t) => {
  const dir = await tempDir("outpost-fullfs-");
  const why = mountTmpfs(dir, "24M");
  if (why) return t.skip(why);
  let host: TestHost | undefined;
  try {
    const dataDir = join(dir, "data");
    await mkdir(dataDir);
    host = await startHost({ dataDir, workers: { "slow.ts": SLOW }, args: ["--max-file-store", "1G", "--shutdown-timeout", "8000"] });
    // Leave about 3 MiB free.
    const free = () => Number(execFileSync("df", ["--output=avail", "-B1", dir]).toString().split("\n")[1]);
    await writeFile(join(dir, "filler"), new Uint8Array(Math.max(0, free() - 3 * 1024 * 1024)));
    let acknowledged = 0;
    let full: { status: number; json: any } | undefined;
    const pad = "x".repeat(900);
    for (let i = 0; i < 400 && !full; i++) {
      const r = await ingest(host.url, "slow", JSON.stringify(Array.from({ length: 50 }, (_, n) => ({ i, n, pad }))), "application/json");
      if (r.status === 202) acknowledged += r.json.accepted;
      else if (r.status === 507) full = r;
      else assert.equal(r.status, 503, JSON.stringify(r.json)); // the request that met the wall: outcome unknown
    }
    assert.ok(full, "ingest answered 507 once the disk was full");
    assert.equal(full.json.error, "storage_full");
    assert.match(full.json.message, /^The disk of the JetStream store is full .*; nothing was stored$/);
    const r = await ready(host);
    assert.equal(r.status, 503);
    assert.match(r.json.reasons[0], /^The disk of the JetStream store is full/);
    assert.equal((await fetch(`${host.url}/healthz`)).status, 200);

    await rm(join(dir, "filler"));
    await waitFor(async () => (await ready(host!)).status === 200, 30_000, "readyz 200 after space was freed");
    assert.match(host.logs(), /replacing the embedded nats-server: it has not answered for \d+ s and the disk has room again/);
    const back = await waitFor(async () => {
      const x = await ingest(host!.url, "slow", "{}", "application/json");
      return x.status === 202 ? x : undefined;
    }, 10_000, "ingest 202 again");
    assert.equal(back.json.accepted, 1);
    const { nc, jsm } = await embeddedJsm(dataDir);
    const state = (await jsm.streams.info("INGEST")).state;
    const handled = (await (await host.api("/v1/handlers")).json()).handlers[0].counts.acked;
    await nc.close();
    assert.ok(state.messages + handled >= acknowledged + 1, `${state.messages} stored + ${handled} handled < ${acknowledged + 1} acknowledged`);
    assert.equal(await host.stop(), 0);
    host = undefined;
  } finally {
    await host?.stop("SIGKILL");
    await sleep(200);
    try {
      execFileSync("umount", ["-l", dir]);
    } catch { /* not mounted */ }
    await rm(dir, { recursive: true, force: true });
  }
});
