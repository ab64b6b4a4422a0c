import { mkdir, readFile, rm, statfs, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { findNatsServer, natsServerVersion, versionAtLeast } from "../broker/nats_server.ts";
import { loadTrustStore } from "../ota/trust.ts";
import { isAlive, writeOut } from "../runtime/process.ts";
import { runtimeVersion } from "../runtime/detect.ts";
import { LOCK_FILE } from "../host/lock.ts";
import { runFlags } from "./run_command.ts";

type _Check = { ok: boolean | "warn"; what: string; detail: string };

// Bundles carry an expiry: a clock before this project existed is wrong.
const _EARLIEST = Date.UTC(2026, 0, 1);

/**
 * `outpost doctor`: what `outpost run` with these flags needs, checked on this machine, one line
 * each, OK or what to do. Exit code 1 when anything failed (warnings do not fail).
 */
export async function doctorCommand(args: string[]): Promise<number> {
  const { values: f } = await runFlags(args);
  const checks: _Check[] = [{ ok: true, what: "runtime", detail: runtimeVersion() }];
  if (f.nats) checks.push({ ok: true, what: "broker", detail: `external (--nats ${String(f.nats).replace(/\/\/[^@/]*@/, "//***@")}); not checked here` });
  else checks.push(...(await _natsServer(f["nats-server"] as string | undefined)));
  const dataDir = resolve(String(f["data-dir"]));
  checks.push(await _dataDir(dataDir, f["max-file-store"] as number));
  checks.push(await _lock(dataDir));
  checks.push(await _port(String(f.host), f.port as number));
  const now = Date.now();
  checks.push(now < _EARLIEST || now > Date.UTC(2100, 0, 1)
    ? { ok: false, what: "clock", detail: `${new Date(now).toISOString()} cannot be right: bundles expire by it; set the time (NTP)` }
    : { ok: true, what: "clock", detail: new Date(now).toISOString() });
  checks.push(await _trust(String(f.trust ?? ""), f["trust-threshold"] as number));
  for (const c of checks) writeOut(`${c.ok === true ? "ok  " : c.ok === "warn" ? "warn" : "FAIL"}  ${c.what.padEnd(11)} ${c.detail}\n`);
  const failed = checks.filter((c) => c.ok === false).length;
  writeOut(failed ? `${failed} check(s) failed\n` : "ready to run\n");
  return failed ? 1 : 0;
}

async function _natsServer(explicit: string | undefined): Promise<_Check[]> {
  try {
    const bin = await findNatsServer(explicit);
    const version = await natsServerVersion(bin);
    const out: _Check[] = [{ ok: true, what: "nats-server", detail: `${version} at ${bin}` }];
    if (!versionAtLeast(version, 2, 10)) {
      out.push({ ok: "warn", what: "fsync", detail: `nats-server ${version} fsyncs every two minutes (no sync_interval before 2.10): a power cut can lose up to two minutes of acknowledged readings` });
    }
    return out;
  } catch (e) {
    return [{ ok: false, what: "nats-server", detail: (e as Error).message.split("\n")[0]! }];
  }
}

async function _dataDir(dir: string, maxFileStore: number): Promise<_Check> {
  try {
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `.doctor-${process.pid}`);
    await writeFile(probe, "ok");
    await rm(probe);
    const s = await statfs(dir);
    const free = s.bavail * s.bsize;
    if (free < maxFileStore) {
      return { ok: false, what: "data dir", detail: `${dir}: ${_mb(free)} free, less than --max-file-store ${_mb(maxFileStore)}: lower --max-file-store, or free space (JetStream stalls on a full disk)` };
    }
    return { ok: true, what: "data dir", detail: `${dir} writable, ${_mb(free)} free for --max-file-store ${_mb(maxFileStore)}` };
  } catch (e) {
    return { ok: false, what: "data dir", detail: `${dir} is not writable (${(e as Error).message}): choose another --data-dir or fix its permissions` };
  }
}

async function _lock(dir: string): Promise<_Check> {
  const pid = Number((await readFile(join(dir, LOCK_FILE), "utf8").catch(() => "")).trim());
  if (pid > 0 && isAlive(pid)) return { ok: false, what: "lock", detail: `${dir} is in use by outpost pid ${pid}: stop it first, or use another --data-dir` };
  return { ok: true, what: "lock", detail: pid > 0 ? `a stale lock of pid ${pid} will be taken over` : "data directory not in use" };
}

function _port(host: string, port: number): Promise<_Check> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", (e: NodeJS.ErrnoException) =>
      res({ ok: false, what: "port", detail: `${host}:${port} ${e.code === "EADDRINUSE" ? "is in use: stop what listens there, or pass --port" : `cannot be bound (${e.message})`}` }));
    s.listen(port, host, () => s.close(() => res({ ok: true, what: "port", detail: `${host}:${port} is free` })));
  });
}

async function _trust(list: string, threshold: number): Promise<_Check> {
  const specs = list.split(",").filter((x) => x.trim());
  if (!specs.length) return { ok: "warn", what: "trust", detail: "no --trust keys: OTA bundles are refused (drop-in handlers still load)" };
  try {
    await loadTrustStore(specs, threshold);
    return { ok: true, what: "trust", detail: `${specs.length} key(s), ${threshold} of them must sign` };
  } catch (e) {
    return { ok: false, what: "trust", detail: `${(e as Error).message}: check the --trust files` };
  }
}

function _mb(b: number): string {
  return `${Math.round(b / 1048576)} MiB`;
}
