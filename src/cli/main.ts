import { startOutpost } from "../host/start.ts";
import { createLogger, LEVELS, type Level } from "../util/log.ts";
import { argv, env, exit, onShutdownSignal, writeErr, writeOut } from "../runtime/process.ts";
import { flagHelp, parseFlags } from "./flags.ts";
import { VERSION } from "../version.ts";
import { bundlesCommand, keygenCommand, packCommand, pushCommand } from "./bundle_commands.ts";
import { buildCommand } from "./build_command.ts";
import { publishCommand } from "./publish_command.ts";
import { dlqCommand } from "./dlq.ts";

const _HELP = `outpost ${VERSION}: sensor readings over HTTP into a local NATS JetStream, handled by isolated handlers

Usage:
  outpost run [flags]     start the host: embedded nats-server, handlers from --workers, HTTP ingest
  outpost dlq ls|show|replay|purge   inspect and replay dead letters (see outpost dlq)
  outpost version         print the version
  outpost build [--out FILE]                       write the single-file runtime bundles/outpost.js (from the source tree)
  outpost keygen [--out DIR] [--name NAME]         make an Ed25519 key pair for signing bundles (NAME.key, NAME.pub)
  outpost pack <dir> --version X --key K[,K2] [--release N] [--name NAME] [--expires-in 30d] [--out FILE]
                                                   prebuild the handlers of <dir> and write a signed bundle
  outpost push <bundle> --to URL [--admin-token T] upload a bundle to a host (POST /v1/bundles), with progress
  outpost bundles [--url URL] [--admin-token T] [--json]   a host's active, previous, staged and failed releases
  outpost publish <bundle> --nats URL [--domain D] [--bucket B] [--kv KV] [--key K]
                                                   put a bundle into a hub's object store and make it the fleet's desired release
  outpost --help          this text

Flags of run (each also read from the environment variable shown):
${flagHelp()}

HTTP routes:
  POST /v1/ingest/:topic  store readings (application/cbor, application/cbor-seq, application/json); 202 after JetStream stored them
  GET  /v1/handlers       handlers with version, status, limits and counts
  GET  /healthz           the process is alive
  GET  /readyz            broker connected, streams present, handlers loaded (503 otherwise)
  POST /v1/bundles        install a signed OTA bundle (admin token)
  GET  /v1/bundles        active, previous, staged and failed releases (admin token)
  GET  /v1/dlq            dead letters (?handler ?topic ?after ?limit); admin token
  GET  /v1/dlq/:id        one dead letter; POST /v1/dlq/:id/replay; DELETE /v1/dlq/:id; POST /v1/dlq/replay?handler=
`;

/**
 * Run the `outpost` command line.
 * @param args arguments after the script name
 * @returns the exit code (for `run`, after a shutdown signal)
 */
export async function main(args: string[] = argv()): Promise<number> {
  const [cmd, ...rest] = args;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    writeOut(_HELP);
    return cmd ? 0 : 2;
  }
  if (cmd === "version" || cmd === "--version") {
    writeOut(`${VERSION}\n`);
    return 0;
  }
  if (cmd === "dlq") {
    try {
      return await dlqCommand(rest);
    } catch (e) {
      writeErr(`outpost: ${(e as Error).message}\n`);
      return 1;
    }
  }
  const tools: Record<string, (a: string[]) => Promise<number>> = {
    build: buildCommand, keygen: keygenCommand, pack: packCommand, push: pushCommand, bundles: bundlesCommand, publish: publishCommand,
  };
  const tool = tools[cmd];
  if (tool) {
    try {
      return await tool(rest);
    } catch (e) {
      const err = e as Error;
      writeErr(`outpost ${cmd}: ${/Error$/.test(err.name) && err.name !== "Error" ? err.message : err.stack ?? err.message}\n`);
      return 1;
    }
  }
  if (cmd !== "run") {
    writeErr(`outpost: unknown command ${JSON.stringify(cmd)}; see outpost --help\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    writeOut(_HELP);
    return 0;
  }
  try {
    const { values: f } = parseFlags(rest, env());
    const level = String(f["log-level"]);
    if (!(level in LEVELS)) throw Object.assign(new Error(`--log-level must be one of ${Object.keys(LEVELS).join(", ")}`), { name: "ConfigError" });
    const log = createLogger(level as Level);
    const host = await startOutpost({
      workersDir: String(f.workers),
      isolation: _isolation(String(f.isolation)),
      watch: f.watch as boolean,
      watchDebounceMs: f["watch-debounce"] as number,
      port: f.port as number,
      host: String(f.host),
      dataDir: String(f["data-dir"]),
      nats: f.nats as string | undefined,
      natsUser: f["nats-user"] as string | undefined,
      natsPass: f["nats-pass"] as string | undefined,
      natsToken: f["nats-token"] as string | undefined,
      natsCreds: f["nats-creds"] as string | undefined,
      natsServer: f["nats-server"] as string | undefined,
      natsDomain: f["nats-domain"] as string | undefined,
      natsLeafnode: f["nats-leafnode"] as string | undefined,
      natsLeafnodeCreds: f["nats-leafnode-creds"] as string | undefined,
      ...(f.fleet ? { fleet: { domain: String(f.fleet), kv: String(f["fleet-kv"]), key: String(f["fleet-key"]) } } : {}),
      maxFileStore: f["max-file-store"] as number,
      fsync: String(f.fsync),
      bodyLimit: f["body-limit"] as number,
      maxReadings: f["max-readings"] as number,
      adminToken: f["admin-token"] as string | undefined,
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
    });
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
  } catch (e) {
    const err = e as Error;
    // Known conditions get their message alone: a person reads it, not a stack trace.
    const known = ["ConfigError", "NatsServerNotFoundError", "NatsServerStartError", "HandlerLoadError", "BundleFormatError"].includes(err.name) ||
      /ECONNREFUSED|CONNECTION_REFUSED|Authorization/i.test(err.message);
    writeErr(`outpost: ${known ? err.message : err.stack ?? err.message}\n`);
    return 1;
  }
}

function _isolation(v: string): "auto" | "wasm" {
  if (v === "auto" || v === "wasm") return v;
  throw Object.assign(new Error(`--isolation must be auto or wasm, got ${JSON.stringify(v)}`), { name: "ConfigError" });
}

/** Entry point of the `outpost` binary and of `bundles/outpost.js`. */
export function cli(): void {
  main().then((code) => exit(code), (e: Error) => {
    writeErr(`outpost: ${e.stack ?? e.message}\n`);
    exit(1);
  });
}
