/**
 * One small harness for every integration test: a real nats-server per test file, Outpost hosts
 * started as real processes on Node, Deno or Bun, and helpers that read what JetStream stored.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect } from "@nats-io/transport-node";
import { nkeyAuthenticator, type NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import { decodeCbor } from "../src/codec/cbor.ts";
import { findNatsServer } from "../src/broker/nats_server.ts";

export const ROOT = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..");
export type Runtime = "node" | "deno" | "bun";
export const RUNTIMES: Runtime[] = ["node", "deno", "bun"];

/** How each runtime starts the host: Node runs the single-file build, Deno and Bun the TypeScript source. */
export function hostCommand(rt: Runtime): string[] {
  switch (rt) {
    case "node":
      return [process.execPath, join(ROOT, "bundles/outpost.js")];
    case "deno":
      return [join(ROOT, "node_modules/.bin/deno"), "run", "-A", "--unstable-worker-options", join(ROOT, "src/cli/bin.ts")];
    case "bun":
      return [join(ROOT, "node_modules/.bin/bun"), join(ROOT, "src/cli/bin.ts")];
  }
}

/** Poll `fn` until it returns a truthy value; bounded by `timeoutMs`. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, what = "condition"): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    await sleep(25);
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  return await new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => res(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/** Run `outpost ARGS` (the single file on Node) to its end, bounded: exit code and everything it printed. */
export async function outpost(args: string[], timeoutMs = 30_000, cwd?: string): Promise<{ code: number | null; out: string }> {
  const [cmd, ...pre] = hostCommand("node");
  const p = spawn(cmd!, [...pre, ...args], { env: { ...process.env, NO_COLOR: "1" }, ...(cwd ? { cwd } : {}) });
  let out = "";
  p.stdout!.on("data", (d) => (out += d));
  p.stderr!.on("data", (d) => (out += d));
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((r) => p.once("exit", r));
  clearTimeout(timer);
  return { code, out };
}

export async function tempDir(prefix = "outpost-test-"): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix));
}

/** A real nats-server with JetStream on 127.0.0.1. */
export interface TestNats {
  url: string;
  port: number;
  nc: NatsConnection;
  jsm: JetStreamManager;
  stop(): Promise<void>;
  /** Kill the server (for broker-down tests) and start it again on the same port and store. */
  kill(): Promise<void>;
  restart(): Promise<void>;
}

export async function startNats(): Promise<TestNats> {
  const dir = await tempDir("outpost-nats-");
  const port = await freePort();
  let proc: ChildProcess;
  const launch = async () => {
    proc = spawn(await findNatsServer(), ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: "ignore" });
    await waitFor(async () => {
      const c = await connect({ servers: `127.0.0.1:${port}`, reconnect: false });
      await c.close();
      return true;
    }, 10_000, "nats-server");
  };
  await launch();
  const nc = await connect({ servers: `127.0.0.1:${port}`, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const jsm = await jetstreamManager(nc);
  const killProc = async () => {
    const p = proc;
    if (p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    nc,
    jsm,
    kill: killProc,
    restart: launch,
    stop: async () => {
      await nc.close().catch(() => {});
      await killProc();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A running Outpost process. */
export interface TestHost {
  url: string;
  proc: ChildProcess;
  dataDir: string;
  workersDir: string;
  /** Everything it printed so far. */
  logs(): string;
  /** Send a signal and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
  /** fetch `path` on the host with its admin token (`--admin-token`, or the one it made in its data directory). */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** The host's admin token. */
  adminToken(): Promise<string>;
}

export interface HostOptions {
  runtime?: Runtime;
  /** Handler files to write: name → source. */
  workers?: Record<string, string>;
  workersDir?: string;
  dataDir?: string;
  /** `--nats URL`; embedded nats-server when absent. */
  nats?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Wait for the listening line (default true). */
  waitReady?: boolean;
  /** The command that starts the host instead of {@link hostCommand} (e.g. a copied single file). */
  command?: string[];
}

export async function startHost(o: HostOptions = {}): Promise<TestHost> {
  const rt = o.runtime ?? "node";
  const workersDir = o.workersDir ?? (await tempDir("outpost-workers-"));
  await mkdir(workersDir, { recursive: true });
  for (const [name, src] of Object.entries(o.workers ?? {})) await writeFile(join(workersDir, name), src);
  const dataDir = o.dataDir ?? (await tempDir("outpost-data-"));
  const [cmd, ...pre] = o.command ?? hostCommand(rt);
  const args = [...pre, "run", "--host", "127.0.0.1", "--port", "0", "--workers", workersDir, "--data-dir", dataDir,
    ...(o.nats ? ["--nats", o.nats] : []), ...(o.args ?? [])];
  // OUTPOST_EXPOSE_NATS_KEY: the embedded broker's client seed in <data-dir>/nats/client.nk, for embeddedJsm.
  const proc = spawn(cmd!, args, { env: { ...process.env, NO_COLOR: "1", OUTPOST_EXPOSE_NATS_KEY: "1", ...o.env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d) => (out += d));
  proc.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  let done = false;
  void exited.then(() => (done = true));
  const host: TestHost = {
    url: "",
    proc,
    dataDir,
    workersDir,
    logs: () => out,
    exited,
    adminToken: async () => {
      const i = args.lastIndexOf("--admin-token");
      return i >= 0 ? args[i + 1]! : (await readFile(join(dataDir, "admin.token"), "utf8")).trim();
    },
    api: async (path, init = {}) => {
      const token = await host.adminToken();
      return await fetch(`${host.url}${path}`, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` } });
    },
    stop: async (signal = "SIGTERM") => {
      if (!done) proc.kill(signal);
      const t = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  if (o.waitReady === false) return host;
  const m = await waitFor(() => {
    if (done) throw new Error(`host exited:\n${out}`);
    return /listening on [^ ]+:(\d+);/.exec(out);
  }, 60_000, `host on ${rt} to listen`).catch(async (e) => {
    proc.kill("SIGKILL");
    throw e;
  });
  host.url = `http://127.0.0.1:${m[1]}`;
  return host;
}

/** POST a body to `/v1/ingest/:topic`. */
export async function ingest(url: string, topic: string, body: BodyInit | Uint8Array, contentType: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const r = await fetch(`${url}/v1/ingest/${topic}`, { method: "POST", body: body as BodyInit, headers: { "content-type": contentType, ...headers } });
  const text = await r.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, json, headers: r.headers };
}

/** Every message currently in a stream (optionally only one subject prefix), decoded from CBOR. */
export async function streamMessages(jsm: JetStreamManager, stream: string, subjectPrefix = ""): Promise<{ subject: string; seq: number; value: any; data: Uint8Array; headers: StoredMsg["header"] | undefined }[]> {
  const info = await jsm.streams.info(stream);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    let m: StoredMsg | null;
    try {
      m = await jsm.streams.getMessage(stream, { seq });
    } catch {
      continue; // deleted (acked under interest retention)
    }
    if (!m || !m.subject.startsWith(subjectPrefix)) continue;
    out.push({ subject: m.subject, seq: m.seq, value: decodeCbor(m.data), data: m.data, headers: m.header });
  }
  return out;
}

/** Last sequence ever stored in a stream (0 when none). */
export async function lastSeq(jsm: JetStreamManager, stream: string): Promise<number> {
  try {
    return (await jsm.streams.info(stream)).state.last_seq;
  } catch {
    return 0;
  }
}

/** Connect to a host's embedded nats-server with the credentials it generated. */
export async function embeddedJsm(dataDir: string): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const seed = (await readFile(join(dataDir, "nats", "client.nk"), "utf8")).trim();
  const portsDir = join(dataDir, "nats", "ports");
  const file = (await readdir(portsDir)).find((f) => f.endsWith(".ports"))!;
  const url = JSON.parse(await readFile(join(portsDir, file), "utf8")).nats[0];
  const nc = await connect({ servers: url, authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) });
  return { nc, jsm: await jetstreamManager(nc) };
}

/** Run `fn` and assert INGEST stored nothing meanwhile (its last sequence did not move). */
export async function storesNothing(jsm: JetStreamManager, fn: () => Promise<void>): Promise<void> {
  const before = await lastSeq(jsm, "INGEST");
  await fn();
  const after = await lastSeq(jsm, "INGEST");
  if (after !== before) throw new Error(`INGEST must be unchanged: last sequence went from ${before} to ${after}`);
}

/** Whether a process id is alive. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pid of the embedded nats-server of a host's data dir. */
export async function embeddedPid(dataDir: string): Promise<number> {
  return Number((await readFile(join(dataDir, "nats", "nats-server.pid"), "utf8")).trim());
}

export { readdir, rm, writeFile, join };
