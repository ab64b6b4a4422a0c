/**
 * Every command of `outpost` and its flags: the one description that `--help`, `docs/cli.md`
 * (checked by a test) and the parsers read.
 */
import { FLEET_DEFAULTS } from "../ota/fleet_record.ts";
import { envName, RUN_FLAGS, type FlagSpec } from "./flags.ts";

/** One command: what it is for, how it is called, its flags. */
export interface CommandSpec {
  name: string;
  summary: string;
  /** The usage line(s), without the leading `Usage: `. */
  usage: string[];
  flags: readonly FlagSpec[];
  /** Whether its flags read `OUTPOST_<FLAG>` environment variables too. */
  env: boolean;
}

const _URL: FlagSpec = { name: "url", kind: "string", default: "http://127.0.0.1:8080", arg: "URL", help: "the host to talk to" };
const _TOKEN: FlagSpec = { name: "admin-token", kind: "string", arg: "TOKEN", help: "the host's admin token (default: the one a local host made in --data-dir)", secret: true };
const _TOKEN_FILE: FlagSpec = { name: "admin-token-file", kind: "string", arg: "FILE", help: "read the admin token from this file" };
const _DATA_DIR: FlagSpec = { name: "data-dir", kind: "string", default: "./.outpost", arg: "DIR", help: "a local host's data directory, for its admin.token" };
const _JSON: FlagSpec = { name: "json", kind: "boolean", default: "false", help: "print JSON instead of text" };
/** The flags of a command that talks to a running host. */
const _CLIENT: readonly FlagSpec[] = [_URL, _TOKEN, _TOKEN_FILE, _DATA_DIR];
const _NATS: readonly FlagSpec[] = [
  { name: "nats", kind: "string", arg: "URL", help: "the hub's NATS server (comma-separated URLs)" },
  { name: "nats-user", kind: "string", arg: "USER", help: "user for --nats" },
  { name: "nats-pass", kind: "string", arg: "PASS", help: "password for --nats", secret: true },
  { name: "nats-token", kind: "string", arg: "TOKEN", help: "token for --nats", secret: true },
  { name: "nats-creds", kind: "string", arg: "FILE", help: "credentials file (JWT + NKey) for --nats" },
];

const _CANARY: readonly FlagSpec[] = [
  { name: "canary", kind: "string", arg: "PERCENT", help: "activate as a canary: the bundle's changed handlers take this share of the readings until the budget promotes or rolls it back" },
  { name: "canary-readings", kind: "int", default: "100", arg: "N", help: "promote after each canary handled N readings within budget" },
  { name: "canary-for", kind: "string", default: "10m", arg: "DURATION", help: "… or after this long" },
  { name: "canary-max-error-rate", kind: "string", default: "5", arg: "PERCENT", help: "roll back when more of a canary's attempts fail" },
];

/** The commands, in the order `outpost --help` lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "run",
    summary: "start the host: embedded nats-server (or --nats), handlers from DIR (--workers), HTTP ingest",
    usage: ["outpost run [DIR] [flags]"],
    flags: RUN_FLAGS,
    env: true,
  },
  {
    name: "config",
    summary: "print the effective configuration of run (flags > environment > --config file > defaults; secrets masked)",
    usage: ["outpost config [--config FILE] [flags of run]", "outpost config --sample      a config file with every flag at its default"],
    flags: [...RUN_FLAGS, { name: "sample", kind: "boolean", default: "false", help: "print a sample config file instead" }],
    env: true,
  },
  {
    name: "doctor",
    summary: "check this machine for run: runtime, nats-server, data directory and its free space, port, clock, trust store",
    usage: ["outpost doctor [--config FILE] [flags of run]"],
    flags: RUN_FLAGS,
    env: true,
  },
  {
    name: "service",
    summary: "write a systemd unit that runs `outpost run` with a config file, and say how to enable it",
    usage: ["outpost service install [--user] [--config FILE] [--out FILE]"],
    flags: [
      { name: "user", kind: "boolean", default: "false", help: "a user unit (~/.config/systemd/user) instead of a system one" },
      { name: "config", kind: "string", default: "/etc/outpost/outpost.json", arg: "FILE", help: "the config file the unit runs with" },
      { name: "out", kind: "string", arg: "FILE", help: "where to write the unit (default /etc/systemd/system/outpost.service, or the user directory)" },
      { name: "workdir", kind: "string", default: "/var/lib/outpost", arg: "DIR", help: "working directory of the service (system units use StateDirectory=outpost)" },
    ],
    env: false,
  },
  {
    name: "new",
    summary: "write a handler, a test for it and editor types into a directory; with --schema-from, its schema from a sample reading",
    usage: ["outpost new NAME [--topic T] [--wasm] [--schema-from READING] [--dir DIR]"],
    flags: [
      { name: "topic", kind: "string", arg: "TOPIC", help: "the topic it consumes (default NAME)" },
      { name: "wasm", kind: "boolean", default: "false", help: "the wasm tier (QuickJS in WebAssembly, hard caps) instead of a worker" },
      { name: "schema-from", kind: "string", arg: "FILE", help: "a sample reading (.json, .cbor): the handler's valibot schema is inferred from it" },
      { name: "dir", kind: "string", default: ".", arg: "DIR", help: "the handler directory (created if missing)" },
      { name: "force", kind: "boolean", default: "false", help: "overwrite the handler and test files if they exist" },
    ],
    env: false,
  },
  {
    name: "test",
    summary: "run a handler on readings from files, in its real tier, with no broker: schema result, outputs, logs, outcome",
    usage: ["outpost test HANDLER --reading FILE [--reading FILE…] [--attempt N] [--expect OUTCOME] [--json]"],
    flags: [
      { name: "reading", kind: "string", arg: "FILE", short: "r", multiple: true, help: "readings: .json (one or an array), .cbor or .cborseq (one item or a sequence), .senml.json, .senml.cbor; repeat for more files" },
      { name: "attempt", kind: "int", default: "1", arg: "N", help: "the delivery attempt to simulate (the last one dead-letters on failure)" },
      { name: "expect", kind: "string", default: "ack", arg: "OUTCOME", help: "the outcome every reading must have for exit code 0: ack, retry, dead-letter or rejected" },
      { name: "isolation", kind: "string", default: "auto", arg: "TIER", help: "auto (the definition's tier) or wasm (as a host run with --isolation wasm)" },
      _JSON,
    ],
    env: false,
  },
  {
    name: "replay",
    summary: "run a candidate handler and the version it would replace on recorded readings, offline, and show what differs",
    usage: [
      "outpost replay CANDIDATE --readings FILE [--readings FILE…] [--against FILE] [--fail-on new-failures|differences] [--json]",
      "outpost replay CANDIDATE --topic T [--since 2h] [--limit N] [--url URL]   readings from a running host's recording; --against defaults to its active version",
    ],
    flags: [
      { name: "readings", kind: "string", arg: "FILE", short: "r", multiple: true, help: "readings files (what outpost record export writes, or any file outpost test reads)" },
      { name: "topic", kind: "string", arg: "TOPIC", help: "take the readings from this topic's recording on the host at --url" },
      { name: "since", kind: "string", arg: "WHEN", help: "with --topic: readings stored since an ISO date, epoch ms, or 15m / 2h / 7d ago" },
      { name: "limit", kind: "int", default: "10000", arg: "N", help: "with --topic: at most N readings" },
      { name: "against", kind: "string", arg: "FILE", help: "the version to compare with (default: the active version of the same handler on the host at --url)" },
      { name: "fail-on", kind: "string", default: "new-failures", arg: "RULE", help: "exit 1 when the candidate has new-failures (a reading the baseline acks fails), or any differences" },
      { name: "isolation", kind: "string", default: "auto", arg: "TIER", help: "auto (each definition's tier) or wasm" },
      ..._CLIENT,
      _JSON,
    ],
    env: false,
  },
  {
    name: "shadow",
    summary: "run a candidate version beside a running handler on live readings: outputs compared, never stored",
    usage: [
      "outpost shadow start NAME FILE [--readings N] [--for 1h]   the candidate gets a copy of every reading; stops by itself",
      "outpost shadow status [NAME] [--json]                     agreement, new failures, latency next to the active version",
      "outpost shadow stop NAME",
    ],
    flags: [
      { name: "readings", kind: "int", default: "1000", arg: "N", help: "start: end after comparing N readings" },
      { name: "for", kind: "string", default: "1h", arg: "DURATION", help: "start: end after this long (90s, 15m, 2h, 1d; at most 7d)" },
      ..._CLIENT,
      _JSON,
    ],
    env: true,
  },
  {
    name: "canary",
    summary: "release a new version of a running handler on a share of its readings; promoted or rolled back by a budget",
    usage: [
      "outpost canary start NAME FILE [--share 10] [--readings 100] [--for 10m] [--max-error-rate 5] [--max-dead-letters 0] [--max-p99-ratio 2]",
      "outpost canary status [NAME] [--json]",
      "outpost canary stop NAME                  roll it back now",
    ],
    flags: [
      { name: "share", kind: "string", default: "10", arg: "PERCENT", help: "start: the share of readings (by reading id, stable across retries) the new version takes" },
      { name: "readings", kind: "int", default: "100", arg: "N", help: "start: promote after the canary handled N readings within budget" },
      { name: "for", kind: "string", default: "10m", arg: "DURATION", help: "start: … or after this long (90s, 15m, 2h; at most 7d)" },
      { name: "max-error-rate", kind: "string", default: "5", arg: "PERCENT", help: "start: roll back when more of the canary's attempts fail" },
      { name: "max-dead-letters", kind: "string", default: "0", arg: "N", help: "start: roll back when the canary dead-letters more readings" },
      { name: "max-p99-ratio", kind: "string", default: "2", arg: "X", help: "start: roll back when the canary's p99 is more than X times the active version's" },
      ..._CLIENT,
      _JSON,
    ],
    env: true,
  },
  {
    name: "record",
    summary: "export a topic's recorded readings from a running host as a CBOR sequence (for outpost test and outpost replay)",
    usage: ["outpost record export TOPIC [--since 2h] [--limit N] [--out FILE] [--url URL]   (writes to stdout without --out)"],
    flags: [
      { name: "since", kind: "string", arg: "WHEN", help: "readings stored since an ISO date, epoch ms, or 15m / 2h / 7d ago" },
      { name: "limit", kind: "int", default: "10000", arg: "N", help: "at most N readings, oldest first" },
      { name: "out", kind: "string", arg: "FILE", help: "write to this file instead of stdout" },
      ..._CLIENT,
    ],
    env: true,
  },
  {
    name: "sensors",
    summary: "manage the sensor registry: who may post to which topics, with which credential (a running host picks changes up)",
    usage: [
      "outpost sensors add ID --topics T[,T…] [--hmac] [--rate N] [--allow-priority] [--allow-not-before]   prints the credential once",
      "outpost sensors list [--json]",
      "outpost sensors rotate ID [--hmac] [--keep-old]     a new credential; the old ones stop working unless --keep-old",
      "outpost sensors revoke ID",
    ],
    flags: [
      { name: "data-dir", kind: "string", default: "./.outpost", arg: "DIR", help: "the host's data directory (its registry is DIR/sensors.json)" },
      { name: "sensors", kind: "string", arg: "FILE", help: "the registry file instead of DIR/sensors.json" },
      { name: "topics", kind: "string", arg: "LIST", help: "topics or patterns the sensor may post to (* one token, > the rest)" },
      { name: "hmac", kind: "boolean", default: "false", help: "an HMAC key for signed requests instead of a bearer token" },
      { name: "rate", kind: "string", arg: "N", help: "at most N readings a second on average" },
      { name: "burst", kind: "int", arg: "N", help: "readings at once above the rate (default: one second's worth)" },
      { name: "allow-priority", kind: "boolean", default: "false", help: "the sensor may use Outpost-Priority: high" },
      { name: "allow-not-before", kind: "boolean", default: "false", help: "the sensor may use Not-Before" },
      { name: "client-cert", kind: "boolean", default: "false", help: "the sensor authenticates with a TLS client certificate whose CN is its id (--tls-client-ca); no token is made" },
      { name: "keep-old", kind: "boolean", default: "false", help: "rotate: keep the old credentials working too" },
      _JSON,
    ],
    env: true,
  },
  {
    name: "tls",
    summary: "make a key and a self-signed certificate for a first HTTPS start (with the system's openssl)",
    usage: ["outpost tls self-signed [--out DIR] [--name NAME] [--days N]"],
    flags: [
      { name: "out", kind: "string", default: "./.outpost/tls", arg: "DIR", help: "where to write cert.pem and key.pem" },
      { name: "name", kind: "string", arg: "NAME", help: "the host name in the certificate (default: this machine's); localhost and 127.0.0.1 are always in" },
      { name: "days", kind: "int", default: "825", arg: "N", help: "how long it is valid" },
    ],
    env: false,
  },
  {
    name: "dlq",
    summary: "inspect and replay dead letters of a running host",
    usage: [
      "outpost dlq ls [--handler NAME] [--topic T] [--limit N] [--after ID]   list dead letters",
      "outpost dlq show ID                          one dead letter, in full",
      "outpost dlq replay ID | --handler NAME       store again under its topic (once), then remove",
      "outpost dlq purge ID | --handler NAME        delete",
    ],
    flags: [
      ..._CLIENT,
      { name: "handler", kind: "string", arg: "NAME", help: "only this handler's dead letters" },
      { name: "topic", kind: "string", arg: "TOPIC", help: "only readings of this topic (ls)" },
      { name: "limit", kind: "int", default: "50", arg: "N", help: "entries per page (ls)" },
      { name: "after", kind: "int", arg: "ID", help: "start after this id (ls)" },
      _JSON,
    ],
    env: true,
  },
  {
    name: "tail",
    summary: "follow a running host: every message's outcome and every log line, until Ctrl-C",
    usage: ["outpost tail [--handler NAME] [--level LEVEL] [--json] [--url URL]"],
    flags: [
      ..._CLIENT,
      { name: "handler", kind: "string", arg: "NAME", help: "only this handler's outcomes and log lines" },
      { name: "level", kind: "string", arg: "LEVEL", help: "log lines at or above debug, info, warn or error (outcomes always)" },
      _JSON,
    ],
    env: true,
  },
  {
    name: "bundles",
    summary: "a host's active, previous, staged and failed releases; use-directory goes back to its --workers directory",
    usage: ["outpost bundles [--url URL] [--json]", "outpost bundles use-directory [--url URL]   serve the --workers directory again instead of the active release",
      "outpost bundles stop-canary [--url URL]    roll the release running as a canary back now"],
    flags: [_URL, _TOKEN, _TOKEN_FILE, _DATA_DIR, _JSON],
    env: true,
  },
  {
    name: "keygen",
    summary: "make an Ed25519 key pair for signing bundles (NAME.key, NAME.pub)",
    usage: ["outpost keygen [--out DIR] [--name NAME]"],
    flags: [
      { name: "out", kind: "string", default: ".", arg: "DIR", help: "directory for the two files" },
      { name: "name", kind: "string", default: "outpost", arg: "NAME", help: "file name of the pair" },
    ],
    env: false,
  },
  {
    name: "pack",
    summary: "prebuild the handlers of DIR and write a signed bundle",
    usage: ["outpost pack DIR --version X --key FILE[,FILE] [flags]"],
    flags: [
      { name: "version", kind: "string", arg: "X", help: "the release's version text (required)" },
      { name: "key", kind: "string", arg: "FILES", help: "private key file(s) to sign with, comma-separated (required)" },
      { name: "release", kind: "int", arg: "N", help: "release number (default: seconds since the epoch)" },
      { name: "name", kind: "string", default: "handlers", arg: "NAME", help: "the bundle's name" },
      { name: "expires-in", kind: "string", default: "30d", arg: "DURATION", help: "how long devices accept it (30d, 12h)" },
      { name: "runtimes", kind: "string", default: "node,deno,bun", arg: "LIST", help: "runtimes the bundle is for" },
      { name: "rollback", kind: "boolean", default: "false", help: "allow installing it over a newer release" },
      { name: "out", kind: "string", arg: "FILE", help: "the bundle file (default NAME-VERSION.outpost)" },
    ],
    env: false,
  },
  {
    name: "push",
    summary: "upload a bundle to a host (POST /v1/bundles), with progress",
    usage: ["outpost push BUNDLE --to URL [--admin-token T] [--canary PERCENT]"],
    flags: [{ name: "to", kind: "string", arg: "URL", help: "the host (required)" }, _TOKEN, _TOKEN_FILE, _DATA_DIR, ..._CANARY, _JSON],
    env: true,
  },
  {
    name: "publish",
    summary: "put a bundle into a hub's object store and make it the fleet's desired release",
    usage: ["outpost publish BUNDLE --nats URL [--domain D] [--bucket B] [--kv KV] [--key K] [--canary PERCENT]"],
    flags: [
      ..._NATS,
      { name: "domain", kind: "string", arg: "DOMAIN", help: "the hub's JetStream domain" },
      { name: "bucket", kind: "string", default: FLEET_DEFAULTS.bucket, arg: "BUCKET", help: "object store bucket for bundles" },
      { name: "kv", kind: "string", default: FLEET_DEFAULTS.kv, arg: "BUCKET", help: "KV bucket of desired releases" },
      { name: "key", kind: "string", default: FLEET_DEFAULTS.key, arg: "KEY", help: "key of the desired release (one per group of devices)" },
      ..._CANARY,
    ],
    env: true,
  },
  {
    name: "hub",
    summary: "on a hub: copy a device's OUTBOX (and urgent results, recordings) through its domain; show each device's lag, contact and release",
    usage: [
      "outpost hub attach --nats URL --device DOMAIN [--urgent SUBJECT] [--record TOPICS] [--max-age 30d] [--replicas N]",
      "outpost hub status --nats URL [--json | --prometheus]",
    ],
    flags: [
      ..._NATS,
      { name: "device", kind: "string", arg: "DOMAIN", help: "attach: the device's JetStream domain (its --nats-domain)" },
      { name: "urgent", kind: "string", arg: "SUBJECT", help: "attach: OUTBOX results matching this subject filter (out.alerts.>) also cross by a source of their own, ahead of the bulk" },
      { name: "record", kind: "string", arg: "TOPICS", help: "attach: also archive the raw readings recorded for these topics (comma-separated; RECORD_<topic> on the device)" },
      { name: "max-age", kind: "string", default: "30d", arg: "DURATION", help: "attach: how long the hub keeps what it copied" },
      { name: "max-bytes", kind: "size", arg: "SIZE", help: "attach: bytes the hub keeps per stream (default no limit)" },
      { name: "replicas", kind: "int", default: "1", arg: "N", help: "attach: copies on a clustered hub" },
      { name: "prometheus", kind: "boolean", default: "false", help: "status: print Prometheus text (for a textfile collector)" },
      _JSON,
    ],
    env: true,
  },
  {
    name: "build",
    summary: "write the single-file runtime bundles/outpost.js (from the source tree)",
    usage: ["outpost build [--out FILE]"],
    flags: [{ name: "out", kind: "string", arg: "FILE", help: "where to write it (default bundles/outpost.js)" }],
    env: false,
  },
  { name: "version", summary: "print the version", usage: ["outpost version"], flags: [], env: false },
];

/** Exit codes of every command. */
export const EXIT_CODES = "Exit codes: 0 success, 1 runtime error, 2 usage error.";

/** The `--help` text of one command. */
export function commandHelp(c: CommandSpec): string {
  const rows = [...c.flags, { name: "help", kind: "boolean", help: "this text", short: "h" } as FlagSpec].map((f) => {
    const left = `  ${f.short ? `-${f.short}, ` : "    "}--${f.name}${f.arg ? ` ${f.arg}` : ""}`;
    const def = f.default !== undefined && f.kind !== "boolean" ? ` (default ${f.default})` : "";
    const env = c.env && f.name !== "help" ? `\n${"".padEnd(33)} env ${envName(f.name)}` : "";
    return `${left.padEnd(32)} ${f.help}${def}${env}`;
  });
  return `outpost ${c.name}: ${c.summary}\n\nUsage: ${c.usage.join("\n       ")}\n\nFlags:\n${rows.join("\n")}\n\n${EXIT_CODES}\n`;
}

/**
 * The flag tables of `docs/cli.md`, one per command, as markdown (a test compares them with the page).
 */
export function flagTables(): string {
  return COMMANDS.filter((c) => c.flags.length && c.name !== "config" && c.name !== "doctor").map((c) => {
    const head = c.env ? "| flag | environment | default | meaning |\n|---|---|---|---|" : "| flag | default | meaning |\n|---|---|---|";
    const rows = c.flags.map((f) => {
      const flag = `\`${f.short ? `-${f.short}, ` : ""}--${f.name}${f.arg ? ` ${f.arg}` : ""}\``;
      const def = f.default !== undefined ? `\`${f.default}\`` : "—";
      const help = f.help.replace(/\|/g, "\\|");
      return c.env ? `| ${flag} | \`${envName(f.name)}\` | ${def} | ${help} |` : `| ${flag} | ${def} | ${help} |`;
    });
    return `### outpost ${c.name}\n\n${c.summary}.\n\n\`\`\`\n${c.usage.join("\n")}\n\`\`\`\n\n${head}\n${rows.join("\n")}\n`;
  }).join("\n");
}
