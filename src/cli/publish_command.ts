import { readFile } from "node:fs/promises";
import { credsAuthenticator } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { publishBundle } from "../ota/publish.ts";
import { env, writeOut } from "../runtime/process.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

const _USAGE = "Usage: outpost publish <bundle> --nats nats://hub:4222 [--nats-user U --nats-pass P | --nats-token T | --nats-creds FILE] " +
  "[--domain D] [--bucket outpost-bundles] [--kv outpost-fleet] [--key desired]";

/**
 * `outpost publish <bundle> --nats URL`: put a bundle into the hub's object store and name it as
 * the fleet's desired release in the hub's KV bucket; devices started with `--fleet` install it.
 */
export async function publishCommand(args: string[]): Promise<number> {
  const { values: f, positional } = parseFlags(args, env(), COMMANDS.find((c) => c.name === "publish")!.flags);
  const file = positional[0];
  if (!file || !f.nats) throw new UsageError(_USAGE);
  const bytes = new Uint8Array(await readFile(file));
  const nc = await connect({
    servers: String(f.nats).split(",").map((s) => s.trim()),
    name: "outpost-publish",
    timeout: 5_000,
    ...(f["nats-user"] !== undefined ? { user: String(f["nats-user"]), pass: String(f["nats-pass"] ?? "") } : {}),
    ...(f["nats-token"] !== undefined ? { token: String(f["nats-token"]) } : {}),
    ...(f["nats-creds"] ? { authenticator: credsAuthenticator(await readFile(String(f["nats-creds"]))) } : {}),
  });
  try {
    const js = jetstream(nc, { timeout: 10_000, ...(f.domain ? { domain: String(f.domain) } : {}) });
    const r = await publishBundle(js, bytes, { bucket: String(f.bucket), kv: String(f.kv), key: String(f.key) });
    const x = r.record;
    writeOut(`${file}: ${x.name} ${x.version} (release ${x.release}), ${x.size} bytes, sha256 ${x.sha256}\n` +
      `  object ${x.bucket}/${x.object}; ${f.kv}/${f.key} revision ${r.revision}` +
      `${r.previous ? `, replacing release ${r.previous.release}` : ""}\n`);
    if (r.previous && r.previous.release > x.release) {
      writeOut(`  note: release ${x.release} is below the previous desired release ${r.previous.release}; devices that run ${r.previous.release} will refuse it\n`);
    }
    return 0;
  } finally {
    await nc.close();
  }
}
