/**
 * The processes a benchmark run starts (nats-server, redis-server, Outpost hosts, probes), each
 * registered so that {@link Procs.stopAll} ends them even when a section fails.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Runtime } from "./args.ts";

/** Repository root. */
export const ROOT = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../..");

/** A started child with its output so far. */
export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  output(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** How to run a TypeScript file on a runtime. */
export function tsCommand(rt: Runtime, file: string): string[] {
  switch (rt) {
    case "node":
      return [process.execPath, "--import", join(ROOT, "test/_register.mjs"), file];
    case "deno":
      return [join(ROOT, "node_modules/.bin/deno"), "run", "-A", "--unstable-worker-options", file];
    case "bun":
      return [join(ROOT, "node_modules/.bin/bun"), file];
  }
}

/** How each runtime starts the host: Node runs the single-file build, Deno and Bun the source. */
export function hostCommand(rt: Runtime): string[] {
  if (rt === "node") return [process.execPath, join(ROOT, "bundles/outpost.js")];
  return tsCommand(rt, join(ROOT, "src/cli/bin.ts"));
}


// One polling helper for the tests and the benchmark.
import { freePort, sleep, waitFor } from "../../test/_harness.ts";
export { freePort, sleep, waitFor };

/** Resident set size of a process in bytes, from /proc (0 when gone). */
export async function rssBytes(pid: number): Promise<number> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * What a process holds of its own: `RssAnon` (private memory; VmRSS also counts the pages of the
 * runtime's binary it touched, ~46 MB for node, which every node process on the machine shares),
 * and the proportional set size of it and every process below it (the handler process, esbuild),
 * from /proc (0 when gone).
 */
export async function memoryOf(pid: number): Promise<{ anonBytes: number; treePssBytes: number }> {
  const field = async (file: string, name: string) => {
    try {
      const m = new RegExp(`${name}:\\s+(\\d+) kB`).exec(await readFile(file, "utf8"));
      return m ? Number(m[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  };
  let pss = 0;
  for (const p of await _tree(pid)) pss += await field(`/proc/${p}/smaps_rollup`, "Pss");
  return { anonBytes: await field(`/proc/${pid}/status`, "RssAnon"), treePssBytes: pss };
}

/** A process and every process below it. */
async function _tree(pid: number): Promise<number[]> {
  const kids: number[] = [];
  try {
    for (const t of await readdir(`/proc/${pid}/task`)) {
      const c = (await readFile(`/proc/${pid}/task/${t}/children`, "utf8")).trim();
      if (c) kids.push(...c.split(/\s+/).map(Number));
    }
  } catch { /* gone */ }
  return [pid, ...(await Promise.all(kids.map(_tree))).flat()];
}

/**
 * CPU time (user + system, ms) a process has used, its threads included, and each of its
 * descendants' separately (Linux `/proc`; undefined elsewhere). Clock ticks are taken as 100 Hz,
 * Linux's USER_HZ.
 */
export async function cpuMs(pid: number): Promise<{ self: number; children: number } | undefined> {
  const one = async (p: number) => {
    const f = (await readFile(`/proc/${p}/stat`, "utf8")).split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  };
  try {
    const [self, ...kids] = await _tree(pid);
    let children = 0;
    for (const k of kids) children += await one(k).catch(() => 0);
    return { self: await one(self!), children };
  } catch {
    return undefined;
  }
}

/**
 * Pin processes (each with its threads and children) to CPUs with `taskset`.
 * @returns false when taskset is missing or refused
 */
export async function pin(pids: number[], cpus: string): Promise<boolean> {
  const { execFile } = await import("node:child_process");
  let ok = true;
  for (const pid of pids) {
    for (const p of await _tree(pid)) {
      ok &&= await new Promise<boolean>((r) => execFile("taskset", ["-a", "-p", "-c", cpus, String(p)], (e) => r(!e)));
    }
  }
  return ok;
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = tcpConnect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), res(true)));
    s.once("error", () => res(false));
  });
}

/** Every process and temp dir of a run; {@link stopAll} is safe to call repeatedly. */
export class Procs {
  #procs: Proc[] = [];
  #dirs: string[] = [];

  /** A temp dir removed by {@link stopAll}. */
  async tempDir(prefix: string): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), `outpost-bench-${prefix}-`));
    this.#dirs.push(d);
    return d;
  }

  /** Spawn a child (stdout and stderr captured, capped at 1 MB). */
  spawn(name: string, cmd: string[], env: Record<string, string> = {}): Proc {
    const child = spawn(cmd[0]!, cmd.slice(1), { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const take = (d: Buffer) => {
      if (out.length < 1_000_000) out += d;
    };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    let done = false;
    const exited = new Promise<number | null>((r) => {
      child.once("exit", (code) => ((done = true), r(code)));
      child.once("error", (e) => ((done = true), (out += String(e)), r(-1)));
    });
    const p: Proc = {
      name,
      child,
      pid: child.pid ?? 0,
      output: () => out,
      exited,
      stop: async () => {
        if (done) return;
        child.kill("SIGTERM");
        // A host's shutdown lets in-flight readings finish (up to 5 s) before it stops its nats-server.
        const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(t);
      },
    };
    this.#procs.push(p);
    return p;
  }

  /** Stop everything started (newest first) and remove temp dirs. */
  async stopAll(): Promise<void> {
    const ps = this.#procs.reverse();
    this.#procs = [];
    for (const p of ps) await p.stop().catch(() => {});
    for (const d of this.#dirs.splice(0)) {
      // A host that had to be killed leaves its embedded nats-server running: stop it by its pid file.
      try {
        const pid = Number((await readFile(join(d, "nats", "nats-server.pid"), "utf8")).trim());
        if (pid > 0 && (await readFile(`/proc/${pid}/cmdline`, "utf8")).includes("nats-server")) process.kill(pid, "SIGKILL");
      } catch { /* none, or gone */ }
      await rm(d, { recursive: true, force: true }).catch(() => {});
    }
  }
}

/** A nats-server with JetStream on loopback. */
export async function startNats(procs: Procs): Promise<Proc & { url: string; port: number }> {
  const dir = await procs.tempDir("nats");
  const port = await freePort();
  const p = procs.spawn("nats-server", ["nats-server", "-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir]);
  await waitFor(async () => {
    if (p.child.exitCode !== null) throw new Error(`nats-server exited: ${p.output()}`);
    return await tcpOpen(port);
  }, 10_000, "nats-server");
  return { ...p, url: `nats://127.0.0.1:${port}`, port };
}

/**
 * A redis-server on loopback with append-only persistence fsynced every second (the closest
 * match to JetStream's file store; no RDB snapshots during the run).
 */
export async function startRedis(procs: Procs): Promise<Proc & { port: number }> {
  const dir = await procs.tempDir("redis");
  const port = await freePort();
  const p = procs.spawn("redis-server", ["redis-server", "--bind", "127.0.0.1", "--port", String(port), "--dir", dir,
    "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "yes"]);
  await waitFor(async () => {
    if (p.child.exitCode !== null) throw new Error(`redis-server exited: ${p.output()}`);
    return await tcpOpen(port);
  }, 10_000, "redis-server");
  return { ...p, port };
}

/** Start an Outpost host against an external broker and wait for its listening line. */
/** The admin token of the bench's hosts (written where a host looks for its own, so no flag shows it). */
export const BENCH_ADMIN_TOKEN = "bench-admin-token";

export async function startHost(procs: Procs, rt: Runtime, workersDir: string, natsUrl: string | undefined, extraArgs: string[] = []): Promise<Proc & { url: string; auth: Record<string, string> }> {
  const dataDir = await procs.tempDir("data");
  await writeFile(join(dataDir, "admin.token"), `${BENCH_ADMIN_TOKEN}\n`, { mode: 0o600 });
  const [cmd, ...pre] = hostCommand(rt);
  const p = procs.spawn(`host-${rt}`, [cmd!, ...pre, "run", "--host", "127.0.0.1", "--port", "0", "--workers", workersDir,
    "--data-dir", dataDir, ...(natsUrl ? ["--nats", natsUrl] : []), "--log-level", "info",
    // The ingest sections park one handler on purpose: measure storing, not back-pressure.
    "--max-backlog", "100000000", ...extraArgs]);
  let m: RegExpExecArray | null = null;
  for (const until = Date.now() + 60_000; !m && Date.now() < until; await sleep(10)) {
    if (p.child.exitCode !== null) throw new Error(`host on ${rt} exited:\n${p.output()}`);
    m = /listening on [^ ]+:(\d+);/.exec(p.output());
  }
  if (!m) throw new Error(`host on ${rt} did not listen within 60 s:\n${p.output()}`);
  return { ...p, url: `http://127.0.0.1:${m[1]}`, auth: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } };
}

/**
 * Run a probe script on a runtime and return the JSON object it prints as its last stdout line.
 * @param args passed to the probe as one JSON argument
 */
export async function runProbe<T>(procs: Procs, rt: Runtime, file: string, args: object, timeoutMs: number): Promise<T> {
  const p = procs.spawn(`probe-${file}`, [...tsCommand(rt, join(ROOT, "bench/probes", file)), JSON.stringify(args)]);
  const t = setTimeout(() => p.child.kill("SIGKILL"), timeoutMs);
  let stdout = "";
  p.child.stdout!.on("data", (d) => (stdout += d));
  const code = await p.exited;
  clearTimeout(t);
  const last = stdout.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  if (code !== 0 || !last) throw new Error(`probe ${file} on ${rt} failed (exit ${code}):\n${p.output().slice(-3000)}`);
  return JSON.parse(last) as T;
}
