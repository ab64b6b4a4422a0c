import { isTopic } from "../sdk/definition.ts";
import { parseWindow } from "../release/canary.ts";
import type { IngestAuthMode } from "../sensors/ingest_auth.ts";
import { readFile } from "node:fs/promises";
import { startOutpost, type OutpostOptions } from "../host/start.ts";
import { createLogger, LEVELS, type Level, type Logger } from "../util/log.ts";
import { env, onShutdownSignal } from "../runtime/process.ts";
import { envName, parseFlags, RUN_FLAGS, UsageError, type FileValues, type FlagValues } from "./flags.ts";

/**
 * The flags of run from the command line, the environment and `--config FILE` (in that order of
 * precedence, then defaults). The first positional argument is the handler directory.
 */
export async function runFlags(args: string[], specs = RUN_FLAGS): Promise<{ values: FlagValues; positional: string[] }> {
  // --config is itself a flag: find it first (from the arguments or the environment).
  const first = parseFlags(args, env(), specs);
  const file = first.values.config ? await readConfigFile(String(first.values.config)) : {};
  const parsed = parseFlags(args, env(), specs, file);
  const dir = parsed.positional[0];
  if (dir !== undefined) {
    if (parsed.positional.length > 1) throw new UsageError(`outpost run takes one directory, got ${parsed.positional.length}: ${parsed.positional.join(" ")}`);
    if (args.some((a) => a === "--workers" || a.startsWith("--workers="))) throw new UsageError("Give the handler directory once: as DIR or as --workers, not both");
    parsed.values.workers = dir;
  }
  // Secrets from files: --admin-token-file and the like fill their flag (the file wins over nothing else given).
  for (const name of _SECRET_FILES) {
    const path = parsed.values[`${name}-file`];
    if (path === undefined || parsed.values[name] !== undefined) continue;
    try {
      parsed.values[name] = (await readFile(String(path), "utf8")).trim();
    } catch (e) {
      throw new UsageError(`--${name}-file ${path}: ${(e as Error).message}`);
    }
  }
  return parsed;
}

const _SECRET_FILES = ["admin-token", "read-token", "nats-pass", "nats-token"] as const;

/** Secret flags given on the command line, where every local user can read them (/proc/PID/cmdline). */
export function secretsOnCommandLine(args: string[]): string[] {
  return _SECRET_FILES.filter((n) => args.some((a) => a === `--${n}` || a.startsWith(`--${n}=`)));
}

/**
 * A config file: a JSON object whose keys are flags of run (`"port": 9000`); `//` line comments
 * are allowed, so a sample can say what each key does.
 * @throws UsageError naming the file and the problem
 */
export async function readConfigFile(path: string): Promise<FileValues> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new UsageError(`--config ${path}: ${(e as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(_stripComments(text));
  } catch (e) {
    throw new UsageError(`--config ${path} is not JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new UsageError(`--config ${path} must hold one JSON object of flags`);
  const known = new Set(RUN_FLAGS.map((f) => f.name));
  for (const [k, x] of Object.entries(v)) {
    if (!known.has(k) || k === "config") throw new UsageError(`--config ${path}: ${JSON.stringify(k)} is not a flag of outpost run`);
    if (!["string", "number", "boolean"].includes(typeof x)) throw new UsageError(`--config ${path}: ${k} must be a string, a number or a boolean`);
  }
  return v as FileValues;
}

/** Drop `//` comments outside strings (JSON with comments, as a sample file has). */
function _stripComments(text: string): string {
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      out += ch;
      if (ch === "\\") out += text[++i] ?? "";
      else if (ch === '"') inString = false;
    } else if (ch === '"') {
      inString = true;
      out += ch;
    } else if (ch === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
      out += "\n";
    } else out += ch;
  }
  return out;
}

/** The host's options from the flags of run. */
export function hostOptions(f: FlagValues, log: Logger): OutpostOptions {
  return {
      workersDir: String(f.workers),
    isolation: _isolation(String(f.isolation)),
    watch: f.watch as boolean,
    watchDebounceMs: f["watch-debounce"] as number,
    port: f.port as number,
    host: String(f.host),
    dataDir: String(f["data-dir"]),
    nats: f.nats as string | undefined,
    natsTimeoutMs: f["nats-timeout"] as number,
    natsUser: f["nats-user"] as string | undefined,
    natsPass: f["nats-pass"] as string | undefined,
    natsToken: f["nats-token"] as string | undefined,
    natsCreds: f["nats-creds"] as string | undefined,
    natsServer: f["nats-server"] as string | undefined,
    natsDomain: f["nats-domain"] as string | undefined,
    natsLeafnode: f["nats-leafnode"] as string | undefined,
    natsLeafnodeCreds: f["nats-leafnode-creds"] as string | undefined,
    ...(f.record !== undefined ? { record: _topics(String(f.record)) } : {}),
    ...(f["mqtt-port"] !== undefined ? { mqtt: { port: f["mqtt-port"] as number, prefix: String(f["mqtt-prefix"]) } } : {}),
    ...(f.fleet ? { fleet: { domain: String(f.fleet), kv: String(f["fleet-kv"]), key: String(f["fleet-key"]) } } : {}),
    ...(f.hub || (f.fleet && f["nats-domain"]) ? { hub: { domain: String(f.hub ?? f.fleet), everyMs: _duration("--hub-every", f["hub-every"]), alarmAfterMs: _duration("--hub-alarm-after", f["hub-alarm-after"]),
      ...(f["uplink-rate"] !== undefined ? { uplink: { rate: f["uplink-rate"] as number, urgent: f["uplink-urgent"] as string | undefined } } : {}) } } : {}),
    outbox: {
      maxAgeMs: _duration("--outbox-max-age", f["outbox-max-age"], 3650 * 86_400_000),
      maxBytes: f["outbox-max-bytes"] as number | undefined,
      maxMsgs: f["outbox-max-msgs"] as number | undefined,
    },
    replicas: _replicas(f.replicas as number),
    maxFileStore: f["max-file-store"] as number,
    fsync: String(f.fsync),
    bodyLimit: f["body-limit"] as number,
    maxReadings: f["max-readings"] as number,
    adminToken: f["admin-token"] as string | undefined,
    readToken: f["read-token"] as string | undefined,
    metrics: f.metrics !== false,
    metricsOpen: f["metrics-open"] === true,
    allowedHosts: f["allowed-hosts"] === undefined ? undefined : String(f["allowed-hosts"]).split(",").filter((x) => x.trim()),
    ingestAuth: _ingestAuth(f["ingest-auth"]),
    tls: _tls(f),
    handlerProcess: f["handler-process"] !== false,
    sensorsFile: f.sensors as string | undefined,
    maxBacklog: f["max-backlog"] as number,
    maxDelayed: f["max-delayed"] as number,
    ...(env().OUTPOST_STORE_CHECK_MS ? { storeCheckMs: Number(env().OUTPOST_STORE_CHECK_MS) } : {}),
    maxConnections: f["max-connections"] as number,
    maxHandlerMemoryMb: f["max-handler-memory"] as number,
    outputLimits: {
      maxOutputs: f["max-outputs"] as number,
      maxOutputBytes: f["max-output-bytes"] as number,
      maxLogLines: f["max-log-lines"] as number,
      maxLogBytes: f["max-log-bytes"] as number,
    },
    ...(env().OUTPOST_FAULT_ACK_DELAY_MS ? { faults: { ackDelayMs: Number(env().OUTPOST_FAULT_ACK_DELAY_MS) } } : {}),
    bundles: {
      trust: String(f.trust ?? "").split(",").filter((s) => s.trim()),
      trustThreshold: f["trust-threshold"] as number,
      maxBundleSize: f["max-bundle-size"] as number,
      probationMs: f["probation-ms"] as number,
      probationMessages: f["probation-messages"] as number,
      probationFailurePct: f["probation-failure-pct"] as number,
      stepDelayMs: Number(env().OUTPOST_BUNDLE_STEP_DELAY_MS ?? 0) || 0,
    },
    log,
  };
}

function _topics(list: string): string[] {
  const topics = list.split(",").map((t) => t.trim()).filter(Boolean);
  const bad = topics.find((t) => !isTopic(t));
  if (bad !== undefined) throw new UsageError(`--record ${JSON.stringify(bad)}: a topic is dot-separated words of letters, digits, _ and -`);
  return topics;
}

function _tls(f: FlagValues): OutpostOptions["tls"] {
  const cert = f["tls-cert"] as string | undefined;
  const key = f["tls-key"] as string | undefined;
  if (!cert && !key) {
    if (f["tls-client-ca"]) throw new UsageError("--tls-client-ca needs --tls-cert and --tls-key");
    return undefined;
  }
  if (!cert || !key) throw new UsageError("HTTPS needs both --tls-cert and --tls-key");
  return { certFile: cert, keyFile: key, clientCaFile: f["tls-client-ca"] as string | undefined };
}

function _ingestAuth(v: unknown): IngestAuthMode {
  const mode = String(v ?? "auto");
  if (mode !== "auto" && mode !== "required" && mode !== "off") throw new UsageError(`--ingest-auth must be auto, required or off, got ${JSON.stringify(mode)}`);
  return mode;
}

/** `outpost run`: start the host and serve until a shutdown signal; bounded by --shutdown-timeout. */
export async function runCommand(args: string[]): Promise<number> {
  const { values: f } = await runFlags(args);
  const level = String(f["log-level"]);
  if (!(level in LEVELS)) throw new UsageError(`--log-level must be one of ${Object.keys(LEVELS).join(", ")}`);
  const format = String(f["log-format"]);
  if (format !== "text" && format !== "json") throw new UsageError(`--log-format must be text or json, got ${JSON.stringify(format)}`);
  const log = createLogger(level as Level, undefined, "outpost", format);
  for (const n of secretsOnCommandLine(args)) {
    log.warn(`--${n} on the command line is visible to every local user (/proc/${process.pid}/cmdline); use --${n}-file, ${envName(n)} or --config`);
  }
  const host = await startOutpost(hostOptions(f, log));
  const shutdownMs = f["shutdown-timeout"] as number;
  return await new Promise<number>((resolve) => {
    let once = false;
    onShutdownSignal((sig) => {
      if (once) return;
      once = true;
      log.info(`${sig}: shutting down`);
      // A wedged broker must not keep the process alive: what was not acknowledged is redelivered.
      const bound = setTimeout(() => {
        log.error(`shutdown did not finish within ${shutdownMs} ms (--shutdown-timeout); exiting anyway`);
        resolve(1);
      }, shutdownMs);
      host.stop().then(() => {
        clearTimeout(bound);
        resolve(0);
      }, (e: Error) => {
        clearTimeout(bound);
        log.error(`shutdown failed: ${e.message}`);
        resolve(1);
      });
    });
  });
}

function _isolation(v: string): "auto" | "wasm" {
  if (v === "auto" || v === "wasm") return v;
  throw new UsageError(`--isolation must be auto or wasm, got ${JSON.stringify(v)}`);
}


function _duration(flag: string, v: unknown, maxMs = 7 * 86_400_000): number {
  const ms = parseWindow(String(v), maxMs);
  if (ms === undefined) throw new UsageError(`${flag} ${JSON.stringify(v)}: a duration such as 90s, 15m, 2h or 1d (at most ${maxMs / 86_400_000}d)`);
  return ms;
}

function _replicas(n: number): number {
  if (![1, 3, 5].includes(n)) throw new UsageError(`--replicas ${n}: 1, 3 or 5 (JetStream keeps an odd number of copies)`);
  return n;
}
