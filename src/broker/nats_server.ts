import { nkeys } from "@nats-io/nats-core";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { NatsServerNotFoundError, NatsServerStartError } from "../errors.ts";
import type { Logger } from "../util/log.ts";
import { STREAMS } from "./streams.ts";
import { hostPermissions, localSubjects } from "./subjects.ts";
import { env, isAlive, run, signalPid, spawn } from "../runtime/process.ts";
import { HOST_ACCOUNT, mqttServerBlocks, type MqttServerConfig } from "../mqtt/server_config.ts";

/** Options for {@link startNatsServer}. */
export interface EmbeddedServerOptions {
  /** Path of the binary; found on PATH (or `OUTPOST_NATS_SERVER`) when absent. */
  binary?: string | undefined;
  /** Outpost's data directory; the server's config, store and pid live below it. */
  dataDir: string;
  /** JetStream file store limit in bytes, always written explicitly. */
  maxFileStore: number;
  /** `sync_interval` for servers 2.10 and newer: a duration like `1s`, or `always`. */
  fsync: string;
  /** Start again where a previous server of this host listened, with its client key (a restart). */
  pin?: { port: number; seed: string } | undefined;
  /** JetStream domain of this server; needed (unique per device) when it is a leafnode of a JetStream hub. */
  domain?: string | undefined;
  /** Connect to a hub as a leafnode: `nats-leaf://[user:pass@]hub:7422`, optionally with a creds file. */
  leafnode?: { url: string; credsFile?: string | undefined } | undefined;
  /** Called with each error line the server writes about a damaged store (a message it cannot read). */
  onStoreError?: ((line: string) => void) | undefined;
  /** Turn on the MQTT listener for sensors (then the host's user lives in the `OUTPOST` account). */
  mqtt?: MqttServerConfig | undefined;
  log: Logger;
}

// nats-server 2.9.10 on a block with damaged bytes: the stream's counts stay, and a consumer that
// reaches the message stops there with this error (measured: scripts/measure-store-damage.ts).
const _STORE_ERROR = /malformed or corrupt message|corrupt(ed)? (block|index|state)|checksum/i;

/** A running embedded server. */
export interface EmbeddedServer {
  url: string;
  /** The nkey seed the host connects with (in memory only; see OUTPOST_EXPOSE_NATS_KEY). */
  seed: string;
  version: string;
  pid: number;
  /** Stop it (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>;
  /** Kill it at once (a stuck server; nothing acknowledged is lost). */
  kill(): void;
  /** Resolves when the server exits for any reason. */
  exited: Promise<number | null>;
  /** Rewrite the config with new MQTT users (a changed sensor registry) and have the server reload it. */
  reconfigure(mqtt: MqttServerConfig): Promise<void>;
}

/** The file in `<data-dir>/nats/` that holds the host's nkey seed (mode 0600). */
export const CLIENT_KEY_FILE = "client.nk";

const _INSTALL_HINT =
  "Outpost needs nats-server to store readings, and it was not found on PATH. " +
  "Install it with `sudo apt-get install -y nats-server` (Debian, Ubuntu, Raspberry Pi OS), " +
  "or point OUTPOST_NATS_SERVER (or --nats-server) at the binary, " +
  "or connect to a running server with --nats nats://host:4222.";

/**
 * Find the `nats-server` binary.
 * @param explicit a path given by flag or environment
 * @returns the absolute path
 * @throws NatsServerNotFoundError with an install hint
 */
export async function findNatsServer(explicit?: string): Promise<string> {
  if (explicit) {
    if (await _isFile(explicit)) return resolve(explicit);
    throw new NatsServerNotFoundError(`nats-server was not found at ${explicit}. ${_INSTALL_HINT}`);
  }
  // Debian installs it to /usr/sbin, which is not on a normal user's PATH.
  const dirs = [...(env().PATH ?? "").split(":"), "/usr/sbin", "/usr/local/sbin", "/usr/local/bin"];
  for (const d of dirs) {
    if (d && await _isFile(join(d, "nats-server"))) return join(d, "nats-server");
  }
  throw new NatsServerNotFoundError(_INSTALL_HINT);
}

async function _isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/**
 * Ask a binary for its version.
 * @returns e.g. `2.9.10`
 */
export async function natsServerVersion(binary: string): Promise<string> {
  const { output } = await run(binary, ["--version"]);
  const m = /v?(\d+\.\d+\.\d+)/.exec(output);
  if (!m?.[1]) throw new NatsServerStartError(`Cannot read the version of ${binary}: ${output.slice(0, 200)}`);
  return m[1];
}

/** Whether a dotted version is at least `major.minor`. */
export function versionAtLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split(".").map(Number);
  return a > major || (a === major && b >= minor);
}

/**
 * Write the config and start `nats-server` on 127.0.0.1 with a free port and fresh credentials.
 * Waits until the server has written its ports file (it is then accepting clients).
 */
export async function startNatsServer(opts: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const bin = await findNatsServer(opts.binary);
  const version = await natsServerVersion(bin);
  const dir = resolve(opts.dataDir, "nats");
  const portsDir = join(dir, "ports");
  await mkdir(portsDir, { recursive: true });
  await _stopStale(join(dir, "nats-server.pid"), opts.log);
  for (const f of await readdir(portsDir)) await rm(join(portsDir, f), { force: true });

  // The host's client key: an nkey, new at every start. The config holds only its public key; the
  // seed lives in the host's memory, so no file holds a credential a handler could read and use
  // to reach the broker itself. OUTPOST_EXPOSE_NATS_KEY=1 writes it to <data-dir>/nats/client.nk
  // (mode 0600) for tests and debugging only.
  const seed = opts.pin?.seed ?? new TextDecoder().decode(nkeys.createUser().getSeed());
  const publicKey = nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
  await rm(join(dir, CLIENT_KEY_FILE), { force: true });
  if (env().OUTPOST_EXPOSE_NATS_KEY === "1") await writeFile(join(dir, CLIENT_KEY_FILE), `${seed}\n`, { mode: 0o600 });
  const syncLine = versionAtLeast(version, 2, 10) ? `  sync_interval: ${JSON.stringify(opts.fsync)}\n` : "";
  await _placeStore(resolve(opts.dataDir, "jetstream"), opts.mqtt !== undefined, opts.log);
  const config = (mqtt: MqttServerConfig | undefined) => {
    const user = `{ nkey: ${JSON.stringify(publicKey)}, permissions: ${_permissions()} }`;
    return `# Written by outpost at every start; edits are overwritten.
listen: "127.0.0.1:${opts.pin?.port ?? -1}"
server_name: ${JSON.stringify(opts.domain ? `outpost-${opts.domain}` : "outpost")}
pid_file: ${JSON.stringify(join(dir, "nats-server.pid"))}
ports_file_dir: ${JSON.stringify(portsDir)}
${mqtt ? mqttServerBlocks(user, mqtt) : `authorization {\n  users: [ ${user} ]\n}\n`}jetstream {
  store_dir: ${JSON.stringify(resolve(opts.dataDir, "jetstream"))}
  max_file_store: ${opts.maxFileStore}
  max_memory_store: 67108864
${opts.domain ? `  domain: ${JSON.stringify(opts.domain)}\n` : ""}${syncLine}}
${opts.leafnode ? _leafnodeBlock(opts.leafnode, mqtt ? HOST_ACCOUNT : undefined) : ""}`;
  };
  const conf = config(opts.mqtt);
  const confPath = join(dir, "nats-server.conf");
  await writeFile(confPath, conf, { mode: 0o600 });
  opts.log.info(`starting nats-server ${version} (${bin}), max_file_store ${opts.maxFileStore} bytes`);
  if (syncLine) opts.log.info(`nats-server syncs JetStream to disk: sync_interval ${opts.fsync}`);
  else {
    opts.log.warn(
      `nats-server ${version} predates sync_interval (2.10): it fsyncs every two minutes, so a power cut ` +
        "can lose up to two minutes of acknowledged readings (a process crash loses nothing); --fsync is ignored",
    );
  }

  const child = spawn(bin, ["-c", confPath], { ownGroup: true });
  const tail: string[] = [];
  const warn = _quietRepeats((m) => opts.log.warn(`nats-server: ${m}`));
  child.onLine((l) => {
    tail.push(l);
    if (tail.length > 20) tail.shift();
    // The anonymous MQTT user of open ingest must have a clear-text password (nats-server 2.9 cannot
    // match a bcrypt one for no_auth_user); it guards nothing, so the warning is only noise.
    if (/\[(ERR|FTL|WRN)\]/.test(l) && !/Plaintext passwords detected/.test(l)) {
      const text = l.replace(/^\[\d+\] \S+ \S+ /, "");
      warn(text);
      if (_STORE_ERROR.test(text)) opts.onStoreError?.(text);
    }
    else opts.log.debug(`nats-server: ${l}`);
  });
  let exitedEarly = false;
  const exited = child.exited.then(
    (c) => (exitedEarly = true, c),
    (e: Error) => {
      exitedEarly = true;
      tail.push(e.message);
      return -1;
    },
  );
  const url = await _waitForPorts(portsDir, () => exitedEarly, 15_000).catch(async (e: Error) => {
    child.kill("SIGKILL");
    throw new NatsServerStartError(`${e.message}. Last output of nats-server:\n${tail.join("\n")}`);
  });
  return {
    url,
    seed,
    version,
    pid: child.pid,
    exited,
    stop: async () => {
      if (exitedEarly) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
    },
    kill: () => {
      if (!exitedEarly) child.kill("SIGKILL");
    },
    reconfigure: async (mqtt) => {
      await writeFile(confPath, config(mqtt), { mode: 0o600 });
      if (!exitedEarly) child.kill("SIGHUP");
    },
  };
}

/**
 * With MQTT on, the host's streams live in the `OUTPOST` account, whose JetStream directory is
 * `jetstream/OUTPOST` instead of the global account's `jetstream/$G`: move the store to where
 * this start needs it, in either direction, so turning MQTT on or off keeps every stream.
 */
async function _placeStore(storeDir: string, mqtt: boolean, log: Logger): Promise<void> {
  const base = join(storeDir, "jetstream");
  const [from, to] = mqtt ? ["$G", HOST_ACCOUNT] : [HOST_ACCOUNT, "$G"];
  const exists = async (p: string) => stat(p).then(() => true, () => false);
  if (!(await exists(join(base, from))) || (await exists(join(base, to)))) return;
  await rename(join(base, from), join(base, to));
  log.info(`moved the JetStream store from account ${from} to ${to} (MQTT ${mqtt ? "on" : "off"})`);
}

/**
 * Pass a message on the first time, then at most once a minute with how often it recurred (a
 * leafnode hub that is down makes nats-server repeat the same warning every second).
 */
function _quietRepeats(emit: (m: string) => void): (m: string) => void {
  const seen = new Map<string, { at: number; count: number }>();
  return (m) => {
    const key = m.replace(/\d+/g, "#");
    const s = seen.get(key);
    const now = Date.now();
    if (s && now - s.at < 60_000) {
      s.count++;
      return;
    }
    emit(s && s.count ? `${m} (and ${s.count} more like it in the last minute)` : m);
    seen.set(key, { at: now, count: 0 });
    if (seen.size > 200) seen.delete(seen.keys().next().value!);
  };
}

async function _waitForPorts(dir: string, dead: () => boolean, timeoutMs: number): Promise<string> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (dead()) throw new Error("nats-server exited during start-up");
    for (const f of await readdir(dir)) {
      if (!f.endsWith(".ports")) continue;
      try {
        const ports = JSON.parse(await readFile(join(dir, f), "utf8")) as { nats?: string[] };
        const u = ports.nats?.[0];
        if (u) return u;
      } catch { /* partially written; retry */ }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nats-server was not ready after ${timeoutMs} ms`);
}

/** A previous host killed with -9 leaves its nats-server running on our store: stop it. */
async function _stopStale(pidFile: string, log: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(pidFile, "utf8")).trim());
  } catch {
    return;
  }
  if (!pid || !isAlive(pid)) return;
  try {
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8");
    if (!cmd.includes("nats-server")) return;
  } catch { /* no /proc: trust the pid file */ }
  log.warn(`stopping a nats-server left running by a previous outpost (pid ${pid})`);
  signalPid(pid, "SIGTERM");
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  if (isAlive(pid)) signalPid(pid, "SIGKILL");
}

/**
 * Subjects that never cross the leafnode: devices share stream and consumer names, so a reading,
 * a dedupe key or an ack of one device would otherwise reach every other device's streams through
 * the hub. The hub reaches a device's streams through its domain (`$JS.<domain>.API`) instead.
 */
export const LOCAL_SUBJECTS: readonly string[] = localSubjects([STREAMS.ingest, STREAMS.dlq]);

function _leafnodeBlock(l: { url: string; credsFile?: string | undefined }, account: string | undefined): string {
  const deny = JSON.stringify(LOCAL_SUBJECTS);
  const creds = l.credsFile ? `      credentials: ${JSON.stringify(resolve(l.credsFile))}\n` : "";
  return `leafnodes {
  remotes = [
    {
      url: ${JSON.stringify(l.url)}
${creds}${account ? `      account: ${JSON.stringify(account)}\n` : ""}      deny_exports: ${deny}
      deny_imports: ${deny}
    }
  ]
}
`;
}


/** The host user's permissions in the server config: only what the host needs. */
function _permissions(): string {
  const p = hostPermissions();
  return `{ publish: { allow: ${JSON.stringify(p.publish)} }, subscribe: { allow: ${JSON.stringify(p.subscribe)} } }`;
}
