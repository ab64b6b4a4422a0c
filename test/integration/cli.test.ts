/**
 * The operator's command line, run as a real process (the single file on Node): help of every
 * command, positional and short flags, the data directory lock, an unreachable broker, a port in
 * use, doctor, the systemd unit, and the way back from a bundle to the --workers directory.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createServer } from "node:net";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { COMMANDS } from "../../src/cli/specs.ts";
import { embeddedPid, freePort, hostCommand, join, outpost, pidAlive, startHost, tempDir, waitFor } from "../_harness.ts";

const HANDLER = `
import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "mine", async handle() {} });
`;

test("every command answers --help with its usage and flags, exit 0; an unknown command or flag is a usage error, exit 2", async () => {
  for (const c of COMMANDS) {
    const r = await outpost([c.name, "--help"]);
    assert.equal(r.code, 0, c.name);
    assert.ok(r.out.startsWith(`outpost ${c.name}: `), `${c.name}: ${r.out.slice(0, 80)}`);
    for (const f of c.flags) assert.match(r.out, new RegExp(`--${f.name}\\b`), `${c.name} --${f.name}`);
  }
  assert.match((await outpost(["pack", "-h"])).out, /^outpost pack: /);
  const bad = await outpost(["run", "--prot", "18087"]);
  assert.equal(bad.code, 2);
  assert.equal(bad.out.trim(), "outpost: Unknown flag --prot (did you mean --port?); see --help");
  const cmd = await outpost(["rnu"]);
  assert.equal(cmd.code, 2);
  assert.match(cmd.out, /^outpost: unknown command "rnu"/);
});

test("outpost run -p PORT DIR listens on that port and loads that directory; a normal stop logs no warning", async () => {
  const dir = await tempDir("outpost-mine-");
  await writeFile(join(dir, "mine.ts"), HANDLER);
  const port = await freePort();
  const dataDir = await tempDir();
  const [cmd, ...pre] = hostCommand("node");
  const p = spawn(cmd!, [...pre, "run", "-p", String(port), "--host", "127.0.0.1", "--data-dir", dataDir, dir], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  p.stdout!.on("data", (d) => (out += d));
  p.stderr!.on("data", (d) => (out += d));
  try {
    // While it starts, the port is already bound and answers 503 "starting".
    const h = await waitFor(async () => {
      const token = await readFile(join(dataDir, "admin.token"), "utf8").then((t) => t.trim(), () => "");
      const j = await (await fetch(`http://127.0.0.1:${port}/v1/handlers`, { headers: { authorization: `Bearer ${token}` } })).json();
      return j.handlers?.length ? j : undefined;
    }, 30_000, "the host");
    assert.deepEqual(h.handlers.map((x: { name: string }) => x.name), ["mine"]);
    assert.deepEqual(h.source, { kind: "workers", release: 0, dir });
    assert.doesNotMatch(out, /Plaintext passwords/, "the generated credentials are an nkey");
  } finally {
    p.kill("SIGTERM");
    await new Promise((r) => p.once("exit", r));
  }
  const stop = out.slice(out.indexOf("SIGTERM: shutting down"));
  assert.match(stop, /INFO  \[outpost\] stopped/);
  assert.doesNotMatch(stop, / (WARN|ERROR) /, stop);
});

test("the data directory lock: a second host is refused naming the first, which keeps serving; a stale lock after kill -9 is taken over", async () => {
  const dataDir = await tempDir();
  const first = await startHost({ dataDir, workers: { "mine.ts": HANDLER } });
  try {
    const pid = await embeddedPid(dataDir);
    const second = await outpost(["run", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir, "--workers", first.workersDir]);
    assert.equal(second.code, 1);
    assert.match(second.out, new RegExp(`outpost: ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is in use by another outpost \\(pid ${first.proc.pid}\\): stop it first, or give this one its own --data-dir`));
    assert.equal((await fetch(`${first.url}/healthz`)).status, 200);
    assert.ok(pidAlive(pid), "the first host's nats-server was left alone");
  } finally {
    await first.stop("SIGKILL");
  }
  // kill -9 leaves the lock (and nats-server) behind: the next host takes both over.
  const third = await startHost({ dataDir, workersDir: first.workersDir });
  try {
    assert.match(third.logs(), new RegExp(`taking over the data directory lock of outpost pid ${first.proc.pid}, which is gone`));
    assert.equal((await fetch(`${third.url}/readyz`)).status, 200);
  } finally {
    await third.stop();
  }
});

test("an external broker that does not answer fails within --nats-timeout, naming the URL", async () => {
  const port = await freePort();
  const t0 = Date.now();
  const r = await outpost(["run", "--host", "127.0.0.1", "--port", "0", "--data-dir", await tempDir(), "--workers", await tempDir(),
    "--nats", `nats://127.0.0.1:${port}`, "--nats-timeout", "1500"]);
  assert.equal(r.code, 1);
  assert.match(r.out, new RegExp(`outpost: Cannot reach NATS at nats://127\\.0\\.0\\.1:${port} within 1500 ms: check that nats-server runs and listens there`));
  assert.ok(Date.now() - t0 < 25_000, "it gave up by itself");
});

test("a port in use is refused before nats-server starts", async () => {
  const busy = createServer();
  const port = await new Promise<number>((res) => busy.listen(0, "127.0.0.1", () => res((busy.address() as { port: number }).port)));
  const dataDir = await tempDir();
  try {
    const r = await outpost(["run", "--host", "127.0.0.1", "--port", String(port), "--data-dir", dataDir, "--workers", await tempDir()]);
    assert.equal(r.code, 1);
    assert.match(r.out, new RegExp(`outpost: Port ${port} on 127\\.0\\.0\\.1 is in use: stop what listens there, or pass --port`));
    assert.doesNotMatch(r.out, /starting nats-server/);
    assert.ok(!existsSync(join(dataDir, "nats")), "no nats-server was set up");
    assert.ok(!existsSync(join(dataDir, "outpost.lock")), "the lock was given back");
  } finally {
    busy.close();
  }
});

test("outpost doctor: OK on a healthy set-up, exit 1 naming what to do on a broken one", async () => {
  const good = await outpost(["doctor", "--data-dir", await tempDir(), "--port", String(await freePort()), "--host", "127.0.0.1", "--max-file-store", "1M"]);
  assert.equal(good.code, 0, good.out);
  assert.match(good.out, /^ok {4}runtime /m);
  assert.match(good.out, /^ok {4}nats-server \d+\.\d+\.\d+ at /m);
  assert.match(good.out, /^ok {4}data dir .* writable/m);
  assert.match(good.out, /ready to run\n$/);
  const file = join(await tempDir(), "not-a-dir");
  await writeFile(file, "x");
  const busy = createServer();
  const port = await new Promise<number>((res) => busy.listen(0, "127.0.0.1", () => res((busy.address() as { port: number }).port)));
  try {
    const bad = await outpost(["doctor", "--data-dir", file, "--port", String(port), "--host", "127.0.0.1", "--nats-server", "/nonexistent/nats-server", "--trust", "/nonexistent.pub"]);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /^FAIL {2}nats-server nats-server was not found at \/nonexistent\/nats-server/m);
    assert.match(bad.out, /^FAIL {2}data dir .* is not writable .*: choose another --data-dir or fix its permissions$/m);
    assert.match(bad.out, new RegExp(`^FAIL  port {8}127\\.0\\.0\\.1:${port} is in use: stop what listens there, or pass --port$`, "m"));
    assert.match(bad.out, /^FAIL {2}trust .*: check the --trust files$/m);
    assert.match(bad.out, /4 check\(s\) failed\n$/);
  } finally {
    busy.close();
  }
});

test("outpost service install writes a unit that systemd-analyze verify accepts", async (t) => {
  try {
    execFileSync("systemd-analyze", ["--version"], { stdio: "ignore" });
  } catch {
    return t.skip("systemd-analyze is not installed (Debian's systemd package)");
  }
  const dir = await tempDir();
  const unit = join(dir, "outpost.service");
  await mkdir(join(dir, "etc"), { recursive: true });
  const r = await outpost(["service", "install", "--out", unit, "--config", join(dir, "etc", "outpost.json")]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, new RegExp(`^wrote ${unit}\\n`));
  assert.match(r.out, /then: systemctl daemon-reload && systemctl enable --now outpost/);
  const text = execFileSync("cat", [unit]).toString();
  assert.match(text, /^ExecStart=\S+ \S+outpost\.js run --config \S+outpost\.json$/m);
  for (const line of ["Restart=on-failure", "StateDirectory=outpost", "EnvironmentFile=-/etc/outpost/outpost.env", "NoNewPrivileges=yes", "WantedBy=multi-user.target"]) {
    assert.ok(text.includes(`${line}\n`), line);
  }
  assert.doesNotMatch(text, /MemoryDenyWriteExecute=yes/, "V8's JIT needs W+X pages");
  const verify = execFileSync("systemd-analyze", ["verify", unit], { stdio: "pipe" }).toString();
  assert.equal(verify.trim(), "");
  await chmod(unit, 0o644);
});

test("client commands name a host they cannot reach", async () => {
  const port = await freePort();
  for (const args of [["dlq", "ls"], ["bundles"]]) {
    const r = await outpost([...args, "--url", `http://127.0.0.1:${port}`]);
    assert.equal(r.code, 1, args.join(" "));
    assert.match(r.out, new RegExp(`^outpost: Cannot reach outpost at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): is it running there\\? Pass --url`));
  }
});
