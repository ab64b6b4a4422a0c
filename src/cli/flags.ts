import { parseArgs } from "node:util";

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
  /** A one-letter alias (`-p`). */
  short?: string;
  /** May be given more than once (`--reading a.json --reading b.cbor`): the value is the list. */
  multiple?: boolean;
}

/** Every flag of `outpost run`, in the order `--help` lists them. */
export const RUN_FLAGS: readonly FlagSpec[] = [
  { name: "config", kind: "string", arg: "FILE", help: "a JSON config file: any flag of run by its name (flags and environment win over it)" },
  { name: "workers", kind: "string", default: "./workers", arg: "DIR", help: "directory of handler modules (or the first positional argument)" },
  { name: "watch", kind: "boolean", default: "true", help: "reload handlers when files in --workers change (--no-watch to turn off)" },
  { name: "watch-debounce", kind: "int", default: "50", arg: "MS", help: "how long a changed handler file must stay unchanged before it is loaded" },
  { name: "handler-process", kind: "boolean", default: "true", help: "Node and Bun: run worker-tier handlers in a child process that may read only the handler builds (Node: permission model; Bun: Landlock, and no TCP unless a handler asks for net; --no-handler-process: in the host's process)" },
  { name: "isolation", kind: "string", default: "auto", arg: "TIER", help: "auto: each handler's definition picks its tier; wasm: every handler runs in the wasm tier (for code you do not trust)" },
  { name: "port", kind: "port", default: "8080", arg: "N", help: "HTTP port (0 picks a free one)", short: "p" },
  { name: "host", kind: "string", default: "0.0.0.0", arg: "ADDR", help: "HTTP address to listen on (sensors are on the LAN)" },
  { name: "data-dir", kind: "string", default: "./.outpost", arg: "DIR", help: "state: nats-server config and JetStream store, built handler bundles" },
  { name: "nats", kind: "string", arg: "URL", help: "use this NATS server or cluster (comma-separated URLs) instead of starting one" },
  { name: "nats-timeout", kind: "int", default: "10000", arg: "MS", help: "how long to wait for --nats at start before giving up with what to check" },
  { name: "nats-user", kind: "string", arg: "USER", help: "user for --nats" },
  { name: "nats-pass", kind: "string", arg: "PASS", help: "password for --nats (a secret: prefer --nats-pass-file)", secret: true },
  { name: "nats-pass-file", kind: "string", arg: "FILE", help: "read --nats-pass from this file" },
  { name: "nats-token", kind: "string", arg: "TOKEN", help: "token for --nats (a secret: prefer --nats-token-file)", secret: true },
  { name: "nats-token-file", kind: "string", arg: "FILE", help: "read --nats-token from this file" },
  { name: "nats-creds", kind: "string", arg: "FILE", help: "credentials file (JWT + NKey) for --nats" },
  { name: "nats-server", kind: "string", arg: "PATH", help: "nats-server binary for the embedded broker (default: found on PATH)" },
  { name: "nats-domain", kind: "string", arg: "NAME", help: "JetStream domain of the embedded broker (unique per device; needed with --nats-leafnode)" },
  { name: "nats-leafnode", kind: "string", arg: "URL", help: "connect the embedded broker to a hub as a leafnode (nats-leaf://[user:pass@]hub:7422); INGEST, OUTBOX and DLQ stay local", secret: true },
  { name: "nats-leafnode-creds", kind: "string", arg: "FILE", help: "credentials file (JWT + NKey) for the leafnode connection" },
  { name: "record", kind: "string", arg: "TOPICS", help: "also keep these topics' readings (comma-separated) in recordings of 16 MiB / 7 days each, for outpost record export and outpost replay" },
  { name: "mqtt-port", kind: "int", arg: "PORT", help: "turn on the embedded broker's MQTT listener (MQTT 3.1.1, QoS 0 and 1) on --host:PORT; sensors publish to <prefix>/<topic>" },
  { name: "mqtt-prefix", kind: "string", default: "ingest", arg: "PREFIX", help: "MQTT topic prefix readings are published under (ingest/temperature is topic temperature)" },
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
  { name: "tls-cert", kind: "string", arg: "FILE", help: "serve HTTPS with this PEM certificate (re-read when it changes; outpost tls self-signed makes one)" },
  { name: "tls-key", kind: "string", arg: "FILE", help: "the certificate's PEM private key" },
  { name: "tls-client-ca", kind: "string", arg: "FILE", help: "ask clients for a certificate chaining to this CA; its subject CN names the sensor (Node)" },
  { name: "ingest-auth", kind: "string", default: "auto", arg: "MODE", help: "sensor credentials at ingest: auto (required once the sensor registry exists), required, or off" },
  { name: "sensors", kind: "string", arg: "FILE", help: "the sensor registry (default <data-dir>/sensors.json; managed by outpost sensors)" },
  { name: "admin-token", kind: "string", arg: "TOKEN", help: "bearer token of the admin surface (/v1/dlq, /v1/bundles, /v1/handlers, /metrics); without one the host makes <data-dir>/admin.token. A secret: prefer --admin-token-file, the environment or --config (the command line is visible to every local user)", secret: true },
  { name: "admin-token-file", kind: "string", arg: "FILE", help: "read --admin-token from this file" },
  { name: "read-token", kind: "string", arg: "TOKEN", help: "a read-only token for /v1/handlers and /metrics (a scraper, a dashboard). A secret: prefer --read-token-file", secret: true },
  { name: "read-token-file", kind: "string", arg: "FILE", help: "read --read-token from this file" },
  { name: "metrics", kind: "boolean", default: "true", help: "count and serve Prometheus metrics at /metrics (--no-metrics: neither)" },
  { name: "metrics-open", kind: "boolean", default: "false", help: "serve /metrics without a token (a scraper on a trusted network)" },
  { name: "allowed-hosts", kind: "string", arg: "LIST", help: "names requests may give in Host besides this machine's names and addresses (comma-separated; * for any); others get 403" },
  { name: "trust", kind: "string", arg: "KEYS", help: "public keys trusted to sign OTA bundles: comma-separated .pub files or ed25519:<key> texts (no keys: bundles are refused)" },
  { name: "trust-threshold", kind: "int", default: "1", arg: "K", help: "distinct trusted keys that must sign a bundle (k of n)" },
  { name: "max-bundle-size", kind: "size", default: "16M", arg: "SIZE", help: "largest OTA bundle accepted (upload and declared file sizes)" },
  { name: "probation-ms", kind: "int", default: "60000", arg: "MS", help: "probation window of a new release: committed after this long without too many failures" },
  { name: "probation-messages", kind: "int", default: "100", arg: "N", help: "or after its handlers handled this many messages" },
  { name: "probation-failure-pct", kind: "int", default: "10", arg: "PCT", help: "a release on probation whose failure rate passes this percentage is rolled back" },
  { name: "fleet", kind: "string", arg: "DOMAIN", help: "install the fleet's desired release: watch --fleet-kv/--fleet-key in the hub's JetStream domain DOMAIN (through the leafnode)" },
  { name: "fleet-kv", kind: "string", default: "outpost-fleet", arg: "BUCKET", help: "KV bucket on the hub holding the desired release" },
  { name: "fleet-key", kind: "string", default: "desired", arg: "KEY", help: "key of the desired release in --fleet-kv (one key per group of devices)" },
  { name: "hub", kind: "string", arg: "DOMAIN", help: "report to the hub in JetStream domain DOMAIN (release, canaries, OUTBOX) and keep the gap alarm (default: the --fleet domain; needs --nats-domain)" },
  { name: "hub-every", kind: "string", default: "10s", arg: "DURATION", help: "how often the device reports to the hub" },
  { name: "hub-alarm-after", kind: "string", default: "60s", arg: "DURATION", help: "the gap alarm sounds once the hub was not reached this long and OUTBOX is 80 % of the way to dropping uncopied results" },
  { name: "uplink-rate", kind: "size", arg: "SIZE", help: "bytes a second the results may take on the link to the hub (--hub): the device forwards OUTBOX itself under this budget instead of the hub sourcing it" },
  { name: "uplink-urgent", kind: "string", arg: "SUBJECT", help: "with --uplink-rate: OUTBOX results matching this filter (out.alerts.>) cross first, outside the budget" },
  { name: "outbox-max-age", kind: "string", default: "7d", arg: "DURATION", help: "how long OUTBOX keeps results for a hub: the longest outage it covers" },
  { name: "outbox-max-bytes", kind: "size", arg: "SIZE", help: "bytes OUTBOX keeps (default and ceiling: a quarter of --max-file-store); the oldest go first" },
  { name: "outbox-max-msgs", kind: "int", arg: "N", help: "results OUTBOX keeps (default: no count limit); the oldest go first" },
  { name: "replicas", kind: "int", default: "1", arg: "N", help: "copies of each stream and bucket on a clustered JetStream (--nats a,b,c): 1, 3 or 5" },
  { name: "log-level", kind: "string", default: "info", arg: "LEVEL", help: "debug, info, warn or error" },
  { name: "log-format", kind: "string", default: "text", arg: "FORMAT", help: "text (one line per entry, for a person) or json (one object per line: ts, level, scope, msg, and handler, topic, seq, msgId, attempt, durationMs, traceId where they apply)" },
];

/** Parsed flag values by flag name. */
export type FlagValues = Record<string, string | number | boolean | string[] | undefined>;

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
  if (!m) throw new UsageError(`Invalid size ${JSON.stringify(text)}: use a byte count or a number with K, M, G or T`);
  const mult = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2]!.toUpperCase()]!;
  return Math.floor(Number(m[1]) * mult);
}

/** The command line is wrong (an unknown flag, a bad value, a missing argument): exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Values from a config file, by flag name (`{"port": 9000, "data-dir": "/var/lib/outpost"}`). */
export type FileValues = Record<string, string | number | boolean>;

/**
 * Parse arguments (node:util `parseArgs`, on Node, Deno and Bun alike), then the environment,
 * then a config file, then defaults: in that order of precedence.
 * @param args arguments after the command
 * @param env environment variables (`OUTPOST_<FLAG>`); pass `{}` for commands that read none
 * @param specs the command's flags
 * @param file values from `--config`
 * @returns values by flag name, and the positional arguments
 * @throws UsageError for unknown flags (with a suggestion), missing and bad values
 */
export function parseFlags(
  args: string[],
  env: Record<string, string | undefined>,
  specs: readonly FlagSpec[] = RUN_FLAGS,
  file: FileValues = {},
): { values: FlagValues; positional: string[] } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const negated = new Set<string>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      rest.push(...args.slice(i));
      break;
    }
    if (a.startsWith("--")) {
      const name = a.slice(2).split("=")[0]!;
      const plain = name.startsWith("no-") ? name.slice(3) : undefined;
      if (!byName.has(name) && plain !== undefined && byName.get(plain)?.kind === "boolean") {
        negated.add(plain);
        continue;
      }
      const spec = byName.get(name);
      if (!spec) throw new UsageError(`Unknown flag --${name}${_suggest(name, specs)}`);
      if (spec.kind !== "boolean" && !a.includes("=") && (args[i + 1] === undefined)) {
        throw new UsageError(`--${name} needs a value (${spec.arg ?? "VALUE"})`);
      }
      if (spec.kind === "boolean" && a.includes("=")) {
        // parseArgs takes no value for a boolean: --watch=false is --no-watch.
        const v = a.slice(a.indexOf("=") + 1);
        if (_convert(spec, v) === false) negated.add(name);
        continue;
      }
    } else if (/^-[A-Za-z]$/.test(a)) {
      const spec = specs.find((s) => s.short === a.slice(1));
      if (!spec) throw new UsageError(`Unknown flag ${a}${_suggest(a.slice(1), specs)}`);
      if (spec.kind !== "boolean" && args[i + 1] === undefined) throw new UsageError(`${a} (--${spec.name}) needs a value (${spec.arg ?? "VALUE"})`);
    }
    rest.push(a);
  }
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const s of specs) options[s.name] = { type: s.kind === "boolean" ? "boolean" : "string", ...(s.short ? { short: s.short } : {}), ...(s.multiple ? { multiple: true } : {}) };
  let parsed: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options, strict: true, allowPositionals: true }) as typeof parsed;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const values: FlagValues = {};
  for (const s of specs) {
    const raw = parsed.values[s.name];
    if (s.multiple) {
      values[s.name] = Array.isArray(raw) ? raw : typeof raw === "string" ? [raw] : undefined;
      continue;
    }
    const given = negated.has(s.name) ? "false" : raw === true ? "true" : typeof raw === "string" ? raw : undefined;
    const fromFile = file[s.name];
    const text = given ?? env[envName(s.name)] ?? (fromFile === undefined ? undefined : String(fromFile)) ?? s.default;
    values[s.name] = text === undefined ? undefined : _convert(s, text);
  }
  return { values, positional: parsed.positionals };
}

/** ` (did you mean --port?)` for a flag one or two edits away from a known one. */
function _suggest(name: string, specs: readonly FlagSpec[]): string {
  let best: { name: string; d: number } | undefined;
  for (const s of specs) {
    const d = _distance(name, s.name);
    if (d <= (s.name.length <= 3 ? 1 : 2) && (!best || d < best.d)) best = { name: s.name, d };
  }
  return best ? ` (did you mean --${best.name}?); see --help` : "; see --help";
}

/** Levenshtein distance, for suggestions only. */
function _distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function _convert(s: FlagSpec, text: string): string | number | boolean {
  switch (s.kind) {
    case "string":
      return text;
    case "boolean":
      if (/^(1|true|yes|on)$/i.test(text)) return true;
      if (/^(0|false|no|off)$/i.test(text)) return false;
      throw new UsageError(`--${s.name} must be true or false, got ${JSON.stringify(text)}`);
    case "size":
      try {
        return parseSize(text);
      } catch (e) {
        throw new UsageError(`--${s.name}: ${(e as Error).message}`);
      }
    case "port":
    case "int": {
      const n = Number(text);
      const max = s.kind === "port" ? 65_535 : Number.MAX_SAFE_INTEGER;
      const min = s.kind === "port" ? 0 : 1;
      if (!Number.isInteger(n) || n < min || n > max) {
        throw new UsageError(`--${s.name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
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
