import { ConfigError } from "../errors.ts";

/** How a flag's text becomes a value. */
export type FlagKind = "string" | "port" | "int" | "size" | "boolean";

/** One flag of `outpost run`; each also reads `OUTPOST_<NAME>` from the environment. */
export interface FlagSpec {
  name: string;
  kind: FlagKind;
  default?: string;
  arg?: string;
  help: string;
  secret?: boolean;
}

/** Every flag of `outpost run`, in the order `--help` lists them. */
export const RUN_FLAGS: readonly FlagSpec[] = [
  { name: "workers", kind: "string", default: "./workers", arg: "DIR", help: "directory of handler modules" },
  { name: "watch", kind: "boolean", default: "true", help: "reload handlers when files in --workers change (--no-watch to turn off)" },
  { name: "watch-debounce", kind: "int", default: "50", arg: "MS", help: "how long a changed handler file must stay unchanged before it is loaded" },
  { name: "isolation", kind: "string", default: "auto", arg: "TIER", help: "auto: each handler's definition picks its tier; wasm: every handler runs in the wasm tier (for code you do not trust)" },
  { name: "port", kind: "port", default: "8080", arg: "N", help: "HTTP port (0 picks a free one)" },
  { name: "host", kind: "string", default: "0.0.0.0", arg: "ADDR", help: "HTTP address to listen on (sensors are on the LAN)" },
  { name: "data-dir", kind: "string", default: "./.outpost", arg: "DIR", help: "state: nats-server config and JetStream store, built handler bundles" },
  { name: "nats", kind: "string", arg: "URL", help: "use this NATS server or cluster (comma-separated URLs) instead of starting one" },
  { name: "nats-user", kind: "string", arg: "USER", help: "user for --nats" },
  { name: "nats-pass", kind: "string", arg: "PASS", help: "password for --nats", secret: true },
  { name: "nats-token", kind: "string", arg: "TOKEN", help: "token for --nats", secret: true },
  { name: "nats-creds", kind: "string", arg: "FILE", help: "credentials file (JWT + NKey) for --nats" },
  { name: "nats-server", kind: "string", arg: "PATH", help: "nats-server binary for the embedded broker (default: found on PATH)" },
  { name: "nats-domain", kind: "string", arg: "NAME", help: "JetStream domain of the embedded broker (unique per device; needed with --nats-leafnode)" },
  { name: "nats-leafnode", kind: "string", arg: "URL", help: "connect the embedded broker to a hub as a leafnode (nats-leaf://[user:pass@]hub:7422); INGEST, OUTBOX and DLQ stay local", secret: true },
  { name: "nats-leafnode-creds", kind: "string", arg: "FILE", help: "credentials file (JWT + NKey) for the leafnode connection" },
  { name: "max-file-store", kind: "size", default: "1G", arg: "SIZE", help: "JetStream disk limit of the embedded broker (INGEST gets 1/2, OUTBOX 1/4, DLQ 1/8)" },
  { name: "fsync", kind: "string", default: "1s", arg: "INTERVAL", help: "nats-server >= 2.10: sync_interval (a duration, or 'always')" },
  { name: "body-limit", kind: "size", default: "1M", arg: "SIZE", help: "largest request body accepted by ingest" },
  { name: "max-readings", kind: "int", default: "10000", arg: "N", help: "most readings in one ingest request" },
  { name: "max-backlog", kind: "int", default: "100000", arg: "N", help: "ingest answers 429 once a handler of the topic has this many readings waiting" },
  { name: "max-delayed", kind: "int", default: "10000", arg: "N", help: "most delayed readings (Not-Before, ctx.emit delayMs) waiting at once; past it ingest answers 429" },
  { name: "max-connections", kind: "int", default: "1024", arg: "N", help: "open HTTP connections at once; past it a new connection is answered 503 and closed" },
  { name: "max-handler-memory", kind: "int", default: "512", arg: "MB", help: "largest memoryMb a handler definition may ask for; a handler asking more is refused" },
  { name: "max-outputs", kind: "int", default: "1000", arg: "N", help: "ctx.publish and ctx.emit calls one message may make; past it the attempt fails" },
  { name: "max-output-bytes", kind: "size", default: "4M", arg: "SIZE", help: "bytes of outputs one message may make; past it the attempt fails" },
  { name: "max-log-lines", kind: "int", default: "100", arg: "N", help: "ctx.log lines one message may write; past it the attempt fails" },
  { name: "max-log-bytes", kind: "size", default: "64K", arg: "SIZE", help: "characters of ctx.log one message may write; past it the attempt fails" },
  { name: "shutdown-timeout", kind: "int", default: "20000", arg: "MS", help: "longest a shutdown may take; then the host exits anyway (what is unacknowledged is redelivered)" },
  { name: "admin-token", kind: "string", arg: "TOKEN", help: "bearer token for the admin routes (/v1/dlq, /v1/bundles); they are off without it", secret: true },
  { name: "trust", kind: "string", arg: "KEYS", help: "public keys trusted to sign OTA bundles: comma-separated .pub files or ed25519:<key> texts (no keys: bundles are refused)" },
  { name: "trust-threshold", kind: "int", default: "1", arg: "K", help: "distinct trusted keys that must sign a bundle (k of n)" },
  { name: "max-bundle-size", kind: "size", default: "16M", arg: "SIZE", help: "largest OTA bundle accepted (upload and declared file sizes)" },
  { name: "probation-ms", kind: "int", default: "60000", arg: "MS", help: "probation window of a new release: committed after this long without too many failures" },
  { name: "probation-messages", kind: "int", default: "100", arg: "N", help: "or after its handlers handled this many messages" },
  { name: "probation-failure-pct", kind: "int", default: "10", arg: "PCT", help: "a release on probation whose failure rate passes this percentage is rolled back" },
  { name: "fleet", kind: "string", arg: "DOMAIN", help: "install the fleet's desired release: watch --fleet-kv/--fleet-key in the hub's JetStream domain DOMAIN (through the leafnode)" },
  { name: "fleet-kv", kind: "string", default: "outpost-fleet", arg: "BUCKET", help: "KV bucket on the hub holding the desired release" },
  { name: "fleet-key", kind: "string", default: "desired", arg: "KEY", help: "key of the desired release in --fleet-kv (one key per group of devices)" },
  { name: "log-level", kind: "string", default: "info", arg: "LEVEL", help: "debug, info, warn or error" },
];

/** Parsed flag values by flag name. */
export type FlagValues = Record<string, string | number | boolean | undefined>;

/** The environment variable of a flag: `--data-dir` → `OUTPOST_DATA_DIR`. */
export function envName(flag: string): string {
  return `OUTPOST_${flag.toUpperCase().replace(/-/g, "_")}`;
}

/**
 * Parse `512K`, `64M`, `1G`, `1.5G` or a plain byte count.
 * @returns bytes
 */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new ConfigError(`Invalid size ${JSON.stringify(text)}: use a byte count or a number with K, M, G or T`);
  const mult = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2]!.toUpperCase()]!;
  return Math.floor(Number(m[1]) * mult);
}

/**
 * Parse arguments, then the environment, then defaults (in that order of precedence).
 * @param args arguments after the command
 * @param env environment variables
 * @returns values by flag name, and the positional arguments
 * @throws ConfigError for unknown flags and bad values
 */
export function parseFlags(args: string[], env: Record<string, string | undefined>, specs: readonly FlagSpec[] = RUN_FLAGS): { values: FlagValues; positional: string[] } {
  const given = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith("--")) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    let name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    let value = eq > 0 ? a.slice(eq + 1) : undefined;
    if (name.startsWith("no-") && !specs.some((s) => s.name === name)) {
      name = name.slice(3);
      value = "false";
    }
    const spec = specs.find((s) => s.name === name);
    if (!spec) throw new ConfigError(`Unknown flag --${name}; see outpost --help`);
    if (value === undefined) {
      if (spec.kind === "boolean") value = "true";
      else {
        value = args[++i];
        if (value === undefined) throw new ConfigError(`--${name} needs a value (${spec.arg ?? "VALUE"})`);
      }
    }
    given.set(name, value);
  }
  const values: FlagValues = {};
  for (const s of specs) {
    const text = given.get(s.name) ?? env[envName(s.name)] ?? s.default;
    values[s.name] = text === undefined ? undefined : _convert(s, text);
  }
  return { values, positional };
}

function _convert(s: FlagSpec, text: string): string | number | boolean {
  switch (s.kind) {
    case "string":
      return text;
    case "boolean":
      if (/^(1|true|yes|on)$/i.test(text)) return true;
      if (/^(0|false|no|off)$/i.test(text)) return false;
      throw new ConfigError(`--${s.name} must be true or false, got ${JSON.stringify(text)}`);
    case "size":
      try {
        return parseSize(text);
      } catch (e) {
        throw new ConfigError(`--${s.name}: ${(e as Error).message}`);
      }
    case "port":
    case "int": {
      const n = Number(text);
      const max = s.kind === "port" ? 65_535 : Number.MAX_SAFE_INTEGER;
      const min = s.kind === "port" ? 0 : 1;
      if (!Number.isInteger(n) || n < min || n > max) {
        throw new ConfigError(`--${s.name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
      }
      return n;
    }
  }
}

/** The flag table of `--help`. */
export function flagHelp(specs: readonly FlagSpec[] = RUN_FLAGS): string {
  return specs
    .map((s) => {
      const left = `  --${s.name}${s.arg ? ` ${s.arg}` : ""}`;
      const def = s.default !== undefined ? ` (default ${s.default})` : "";
      return `${left.padEnd(30)} ${s.help}${def}\n${"".padEnd(31)} env ${envName(s.name)}`;
    })
    .join("\n");
}
