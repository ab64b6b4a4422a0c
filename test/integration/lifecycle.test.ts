import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect } from "@nats-io/transport-node";
import { embeddedJsm, embeddedPid, hostCommand, ingest, join, pidAlive, startHost, streamMessages, tempDir, waitFor } from "../_harness.ts";

const COUNTER = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "count",
  schema: v.object({ n: v.number() }),
  async handle(r, ctx) { await ctx.publish("counted", { n: r.n, seq: ctx.seq }); },
});
`;

test("SIGTERM stops the embedded nats-server; a restart resumes the durable consumers without reprocessing", async () => {
  const dataDir = await tempDir();
  const workersDir = await tempDir("outpost-workers-");
  const first = await startHost({ dataDir, workersDir, workers: { "counter.ts": COUNTER } });
  const pid1 = await embeddedPid(dataDir);
  assert.ok(pidAlive(pid1));
  for (const n of [1, 2, 3]) assert.equal((await ingest(first.url, "count", JSON.stringify({ n }), "application/json")).status, 202);
  let conn = await embeddedJsm(dataDir);
  await waitFor(async () => (await streamMessages(conn.jsm, "OUTBOX", "out.counted")).length === 3, 10_000, "3 handled");
  await conn.nc.close();
  assert.equal(await first.stop("SIGTERM"), 0);
  assert.equal(pidAlive(pid1), false, "nats-server stopped with the host");
  assert.match(first.logs(), /SIGTERM: shutting down/);

  const second = await startHost({ dataDir, workersDir });
  try {
    for (const n of [4, 5]) assert.equal((await ingest(second.url, "count", JSON.stringify({ n }), "application/json")).status, 202);
    conn = await embeddedJsm(dataDir);
    await waitFor(async () => {
      const m = await streamMessages(conn.jsm, "OUTBOX", "out.counted");
      return m.length >= 5 ? m : undefined;
    }, 10_000, "5 handled");
    await new Promise((r) => setTimeout(r, 300)); // room for a wrongful redelivery to show up
    const all = await streamMessages(conn.jsm, "OUTBOX", "out.counted");
    assert.deepEqual(all.map((m) => m.value.n), [1, 2, 3, 4, 5], "every reading handled exactly once across the restart");
    assert.deepEqual(all.map((m) => m.value.seq), [1, 2, 3, 4, 5]);
    const c = await conn.jsm.consumers.info("INGEST", "outpost-counter");
    assert.equal(c.delivered.stream_seq, 5);
    assert.equal(c.num_redelivered, 0);
    await conn.nc.close();
  } finally {
    await second.stop();
  }
});

test("without nats-server the host exits non-zero with a one-paragraph install hint and no stack trace", async () => {
  const [cmd, ...pre] = hostCommand("node");
  const p = spawn(cmd!, [...pre, "run", "--port", "0", "--data-dir", await tempDir(), "--nats-server", "/nonexistent/nats-server"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  p.stderr.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((r) => p.once("exit", r));
  assert.equal(code, 1);
  assert.match(err, /^outpost: nats-server was not found at \/nonexistent\/nats-server\. Outpost needs nats-server/m);
  assert.match(err, /sudo apt-get install -y nats-server/);
  assert.doesNotMatch(err, /^\s+at /m);
});

test("a handler that overruns timeoutMs is stopped, its isolate restarted, and the attempt counted", async () => {
  const LOOP = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "slow",
  timeoutMs: 200,
  retry: { maxAttempts: 2, backoff: [10] },
  handle(r) { if (r.spin) for (;;) {} },
});
`;
  const host = await startHost({ workers: { "slow.ts": LOOP } });
  try {
    const r = await ingest(host.url, "slow", JSON.stringify({ spin: true }), "application/json");
    assert.equal(r.status, 202);
    const conn = await embeddedJsm(host.dataDir);
    const [dl] = await waitFor(async () => {
      const m = await streamMessages(conn.jsm, "DLQ", "dlq.slow");
      return m.length ? m : undefined;
    }, 20_000, "DLQ entry of the looping handler");
    assert.equal(dl!.value.attempts, 2);
    assert.deepEqual([dl!.value.error.name, dl!.value.error.message], ["HandlerTimeoutError", "Handler slow did not finish within 200 ms"]);
    // The restarted isolate still works.
    assert.equal((await ingest(host.url, "slow", JSON.stringify({ spin: false }), "application/json")).status, 202);
    await waitFor(async () => {
      const { handlers } = await (await host.api("/v1/handlers")).json();
      return handlers[0].counts.acked === 1 && handlers[0].status === "running" ? handlers[0] : undefined;
    }, 10_000, "the restarted isolate to ack");
    assert.match(host.logs(), /isolate restarted after a timeout/);
    await conn.nc.close();
  } finally {
    await host.stop();
  }
});

test("--nats connects to an external server with credentials, and refuses bad ones clearly", async () => {
  const { spawn: sp } = await import("node:child_process");
  const { findNatsServer } = await import("../../src/broker/nats_server.ts");
  const { freePort } = await import("../_harness.ts");
  const port = await freePort();
  const store = await tempDir();
  const srv = sp(await findNatsServer(), ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", store, "--user", "dev", "--pass", "s3cret"], { stdio: "ignore" });
  try {
    await waitFor(async () => {
      const nc = await connect({ servers: `127.0.0.1:${port}`, user: "dev", pass: "s3cret", reconnect: false });
      await nc.close();
      return true;
    }, 10_000, "nats-server with auth");
    const host = await startHost({ nats: `nats://127.0.0.1:${port}`, args: ["--nats-user", "dev"], env: { OUTPOST_NATS_PASS: "s3cret" }, workers: { "counter.ts": COUNTER } });
    try {
      assert.equal((await ingest(host.url, "count", JSON.stringify({ n: 1 }), "application/json")).status, 202);
      assert.match(host.logs(), /connected to external nats-server 2\.\d+\.\d+ at nats:\/\/127\.0\.0\.1:\d+/);
    } finally {
      await host.stop();
    }
    const bad = await startHost({ nats: `nats://127.0.0.1:${port}`, args: ["--nats-user", "dev", "--nats-pass", "wrong"], waitReady: false });
    assert.equal(await bad.exited, 1);
    assert.match(bad.logs(), /^outpost: .*Authorization Violation/im);
    assert.doesNotMatch(bad.logs(), /^\s+at /m);
  } finally {
    srv.kill("SIGKILL");
  }
});

test("an embedded nats-server that dies is restarted on the same port; ingest recovers and nothing stored is lost", async () => {
  const host = await startHost({ workers: { "counter.ts": COUNTER } });
  try {
    assert.equal((await ingest(host.url, "count", JSON.stringify({ n: 1 }), "application/json")).status, 202);
    const pid = await embeddedPid(host.dataDir);
    process.kill(pid, "SIGKILL");
    await waitFor(() => !pidAlive(pid), 5_000, "nats-server to die");
    const r = await waitFor(async () => {
      const x = await ingest(host.url, "count", JSON.stringify({ n: 2 }), "application/json");
      return x.status === 202 ? x : undefined;
    }, 20_000, "ingest to accept again");
    assert.equal(r.json.accepted, 1);
    const pid2 = await embeddedPid(host.dataDir);
    assert.notEqual(pid2, pid);
    assert.ok(pidAlive(pid2));
    assert.match(host.logs(), /embedded nats-server exited unexpectedly .*; restarting it/);
    assert.match(host.logs(), /embedded nats-server restarted \(pid \d+\)/);
    const conn = await embeddedJsm(host.dataDir);
    const out = await waitFor(async () => {
      const m = await streamMessages(conn.jsm, "OUTBOX", "out.counted");
      return m.length >= 2 ? m : undefined;
    }, 15_000, "both readings handled");
    assert.deepEqual(out.map((m) => m.value.n).sort(), [1, 2]);
    await conn.nc.close();
  } finally {
    await host.stop();
  }
});

test("with nats-server 2.10 or newer, --fsync becomes sync_interval; older servers get the two-minute warning", async () => {
  const { findNatsServer } = await import("../../src/broker/nats_server.ts");
  const real = await findNatsServer();
  // Only 2.9 is packaged here: a wrapper reports 2.10 and hands the real server the config
  // without the line 2.9 does not know, so the host's 2.10 path runs for real.
  const dir = await tempDir("outpost-fake-nats-");
  const fake = join(dir, "nats-server");
  const { writeFile: write, chmod, readFile: read } = await import("node:fs/promises");
  await write(fake, `#!/bin/sh
if [ "$1" = "--version" ]; then echo "nats-server: v2.10.4"; exit 0; fi
sed '/sync_interval/d' "$2" > "$2.stripped"
exec ${real} -c "$2.stripped"
`);
  await chmod(fake, 0o755);
  const newer = await startHost({ args: ["--nats-server", fake, "--fsync", "always"] });
  try {
    const conf = await read(join(newer.dataDir, "nats", "nats-server.conf"), "utf8");
    assert.match(conf, /^\s*sync_interval: "always"$/m);
    assert.match(newer.logs(), /starting nats-server 2\.10\.4 .*\n.*syncs JetStream to disk: sync_interval always/);
    assert.doesNotMatch(newer.logs(), /predates sync_interval/);
  } finally {
    await newer.stop();
  }
  const older = await startHost({ args: ["--fsync", "always"] });
  try {
    const conf = await read(join(older.dataDir, "nats", "nats-server.conf"), "utf8");
    assert.doesNotMatch(conf, /sync_interval/);
    assert.equal((older.logs().match(/predates sync_interval \(2\.10\): it fsyncs every two minutes/g) ?? []).length, 1);
  } finally {
    await older.stop();
  }
});
