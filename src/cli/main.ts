import { argv, exit, writeErr, writeOut } from "../runtime/process.ts";
import { VERSION } from "../version.ts";
import { bundlesCommand, keygenCommand, packCommand, pushCommand } from "./bundle_commands.ts";
import { buildCommand } from "./build_command.ts";
import { configCommand } from "./config_command.ts";
import { doctorCommand } from "./doctor.ts";
import { dlqCommand } from "./dlq.ts";
import { recordCommand } from "./record_command.ts";
import { replayCommand } from "./replay_command.ts";
import { shadowCommand } from "./shadow_command.ts";
import { canaryCommand } from "./canary_command.ts";
import { hubCommand } from "./hub_command.ts";
import { UsageError } from "./flags.ts";
import { publishCommand } from "./publish_command.ts";
import { runCommand } from "./run_command.ts";
import { newCommand } from "./new_command.ts";
import { sensorsCommand } from "./sensors_command.ts";
import { serviceCommand } from "./service.ts";
import { testCommand } from "./test_command.ts";
import { tailCommand } from "./tail_command.ts";
import { tlsCommand } from "./tls_command.ts";
import { commandHelp, COMMANDS, EXIT_CODES } from "./specs.ts";

const _RUN: Record<string, (args: string[]) => Promise<number>> = {
  run: runCommand,
  config: configCommand,
  doctor: doctorCommand,
  service: serviceCommand,
  new: newCommand,
  sensors: sensorsCommand,
  test: testCommand,
  replay: replayCommand,
  record: recordCommand,
  shadow: shadowCommand,
  canary: canaryCommand,
  tls: tlsCommand,
  tail: tailCommand,
  dlq: dlqCommand,
  bundles: bundlesCommand,
  keygen: keygenCommand,
  pack: packCommand,
  push: pushCommand,
  publish: publishCommand,
  hub: hubCommand,
  build: buildCommand,
  version: () => Promise.resolve((writeOut(`${VERSION}\n`), 0)),
};

function _help(): string {
  const rows = COMMANDS.map((c) => `  ${c.name.padEnd(9)} ${c.summary}`);
  return `outpost ${VERSION}: sensor readings over HTTP into a local NATS JetStream, handled by isolated handlers

Usage: outpost COMMAND [flags]      (outpost COMMAND --help for its flags)

Commands:
${rows.join("\n")}

Flags of run (each also read from the environment variable OUTPOST_<FLAG>, and from --config FILE):
  see outpost run --help

HTTP routes:
  POST /v1/ingest/:topic  store readings (application/cbor, application/cbor-seq, application/json); 202 after JetStream stored them
  GET  /v1/handlers       handlers with version, status, limits and counts
  GET  /healthz           the process is alive;  GET /readyz  broker answers, streams present, handlers loaded, store intact (503 otherwise)
  GET  /metrics           Prometheus text
  POST /v1/bundles, GET /v1/bundles, POST /v1/bundles/use-directory, /v1/dlq…, POST /v1/store/acknowledge   admin token

${EXIT_CODES}
`;
}

/**
 * Run the `outpost` command line.
 * @param args arguments after the script name
 * @returns the exit code: 0 success, 1 runtime error, 2 usage error
 */
export async function main(args: string[] = argv()): Promise<number> {
  const [cmd, ...rest] = args;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    const topic = cmd === "help" ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    writeOut(topic ? commandHelp(topic) : _help());
    return cmd ? 0 : 2;
  }
  if (cmd === "--version") return await _RUN.version!([]);
  const spec = COMMANDS.find((c) => c.name === cmd);
  const run = _RUN[cmd];
  if (!spec || !run) {
    const near = COMMANDS.find((c) => _close(c.name, cmd));
    writeErr(`outpost: unknown command ${JSON.stringify(cmd)}${near ? ` (did you mean ${near.name}?)` : ""}; see outpost --help\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    writeOut(commandHelp(spec));
    return 0;
  }
  try {
    return await run(rest);
  } catch (e) {
    const err = e as Error;
    if (err.name === "UsageError" || e instanceof UsageError) {
      writeErr(`outpost: ${err.message}\n`);
      return 2;
    }
    // Known conditions get their message alone: a person reads it, not a stack trace.
    const known = /Error$/.test(err.name) && err.name !== "Error" && err.name !== "TypeError" && err.name !== "RangeError";
    writeErr(`outpost: ${known || /ECONNREFUSED|CONNECTION_REFUSED|Authorization/i.test(err.message) ? err.message : err.stack ?? err.message}\n`);
    return 1;
  }
}

function _close(a: string, b: string): boolean {
  return a.startsWith(b.slice(0, 3)) || b.startsWith(a.slice(0, 3));
}

/** Entry point of the `outpost` binary and of `bundles/outpost.js`. */
export function cli(): void {
  main().then((code) => exit(code), (e: Error) => {
    writeErr(`outpost: ${e.stack ?? e.message}\n`);
    exit(1);
  });
}
