import { readFile } from "node:fs/promises";
import { jetstream } from "@nats-io/jetstream";
import { publishBundle } from "../ota/publish.ts";
import { canaryFlags, connectNats } from "./client.ts";
import { env, writeOut } from "../runtime/process.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

const _USAGE = "Usage: outpost publish <bundle> --nats nats://hub:4222 [--nats-user U --nats-pass P | --nats-token T | --nats-creds FILE] " +
  "[--domain D] [--bucket outpost-bundles] [--kv outpost-fleet] [--key desired] [--canary PERCENT]";

/**
 * `outpost publish <bundle> --nats URL`: put a bundle into the hub's object store and name it as
 * the fleet's desired release in the hub's KV bucket; devices started with `--fleet` install it.
 */
export async function publishCommand(args: string[]): Promise<number> {
  const { values: f, positional } = parseFlags(args, env(), COMMANDS.find((c) => c.name === "publish")!.flags);
  const file = positional[0];
  if (!file || !f.nats) throw new UsageError(_USAGE);
  const bytes = new Uint8Array(await readFile(file));
  const canary = canaryFlags(f);
  const nc = await connectNats(f, "outpost-publish");
  try {
    const js = jetstream(nc, { timeout: 10_000, ...(f.domain ? { domain: String(f.domain) } : {}) });
    const r = await publishBundle(js, bytes, { bucket: String(f.bucket), kv: String(f.kv), key: String(f.key), canary });
    const x = r.record;
    writeOut(`${file}: ${x.name} ${x.version} (release ${x.release}), ${x.size} bytes, sha256 ${x.sha256}\n` +
      `  object ${x.bucket}/${x.object}; ${f.kv}/${f.key} revision ${r.revision}` +
      `${r.previous ? `, replacing release ${r.previous.release}` : ""}\n` +
      (canary ? `  as a canary: ${canary.share} % of the readings for up to ${canary.for} or ${canary.readings} readings, then promoted or rolled back on each device\n` : ""));
    if (r.previous && r.previous.release > x.release) {
      writeOut(`  note: release ${x.release} is below the previous desired release ${r.previous.release}; devices that run ${r.previous.release} will refuse it\n`);
    }
    return 0;
  } finally {
    await nc.close();
  }
}
