/**
 * `outpost sensors add|list|revoke|rotate`: edit the sensor registry of a data directory. A
 * running host re-reads the file within a second, so changes need no restart. A new token or
 * HMAC key is printed once and never stored in the clear (a token only as a salted hash).
 * @module
 */
import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { writeOut } from "../runtime/process.ts";
import { newHmacKey, newToken, readRegistry, registryFile, writeRegistry, type Credential, type RegistryFile, type Sensor } from "../sensors/registry.ts";
import { env } from "../runtime/process.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

/** `outpost sensors SUBCOMMAND …`. */
export async function sensorsCommand(args: string[]): Promise<number> {
  const { values: f, positional } = parseFlags(args, env(), COMMANDS.find((c) => c.name === "sensors")!.flags);
  const [sub, id, ...extra] = positional;
  if (extra.length) throw new UsageError(`Unexpected arguments: ${extra.join(" ")}`);
  const file = resolve(f.sensors ? String(f.sensors) : registryFile(String(f["data-dir"])));
  const reg: RegistryFile = (await readRegistry(file)) ?? { version: 1, sensors: [] };
  const find = (): Sensor => {
    if (!id) throw new UsageError(`outpost sensors ${sub} needs a sensor id`);
    const s = reg.sensors.find((x) => x.id === id);
    if (!s) throw new ConfigError(`No sensor ${JSON.stringify(id)} in ${file}; outpost sensors list shows them`);
    return s;
  };
  const credential = async (): Promise<{ credential: Credential; shown: string }> => {
    if (f.hmac) {
      const k = newHmacKey();
      return { credential: k.credential, shown: `HMAC key id ${k.keyId}\nHMAC key    ${k.key}\n(sign each request: see docs/security.md; shown once, keep it on the device)` };
    }
    const t = await newToken();
    return { credential: t.credential, shown: `token ${t.token}\n(send as Authorization: Bearer <token>; shown once, only its salted hash is stored)` };
  };
  switch (sub) {
    case "add": {
      if (!id) throw new UsageError("outpost sensors add needs a sensor id: outpost sensors add ID --topics a,b");
      if (reg.sensors.some((s) => s.id === id)) throw new ConfigError(`Sensor ${id} exists; use rotate for a new credential, or revoke it first`);
      if (!f.topics) throw new UsageError("outpost sensors add needs --topics (comma-separated topics or patterns: lab.*, plant.>)");
      const c = f["client-cert"] && !f.hmac ? undefined : await credential();
      const s: Sensor = {
        id,
        topics: String(f.topics).split(",").map((t) => t.trim()).filter(Boolean),
        credentials: c ? [c.credential] : [],
        ...(f["client-cert"] ? { clientCertificate: true } : {}),
        created: new Date().toISOString(),
        ...(f.rate !== undefined ? { rateLimit: { perSecond: Number(f.rate), ...(f.burst !== undefined ? { burst: Number(f.burst) } : {}) } } : {}),
        ...(f["allow-priority"] ? { allowPriority: true } : {}),
        ...(f["allow-not-before"] ? { allowNotBefore: true } : {}),
      };
      reg.sensors.push(s);
      await _save(file, reg);
      writeOut(`sensor ${id} may post to ${s.topics.join(", ")}\n${c ? c.shown : `(with a TLS client certificate whose subject CN is ${id}, chaining to --tls-client-ca)`}\n`);
      return 0;
    }
    case "rotate": {
      const s = find();
      const c = await credential();
      // The old credentials stop working at once unless --keep-old (then revoke them later by rotating again).
      s.credentials = f["keep-old"] ? [...s.credentials, c.credential] : [c.credential];
      await _save(file, reg);
      writeOut(`sensor ${s.id}: new credential${f["keep-old"] ? " (the old ones still work)" : "; the old ones no longer work"}\n${c.shown}\n`);
      return 0;
    }
    case "revoke": {
      const s = find();
      reg.sensors = reg.sensors.filter((x) => x !== s);
      await _save(file, reg);
      writeOut(`sensor ${s.id} revoked: its credentials no longer work (a running host notices within a second)\n`);
      return 0;
    }
    case "list":
    case undefined: {
      if (f.json) {
        writeOut(`${JSON.stringify(reg.sensors.map((s) => ({ ...s, credentials: s.credentials.map((c) => ({ id: c.id, kind: c.kind, created: c.created })) })), null, 2)}\n`);
        return 0;
      }
      if (!reg.sensors.length) {
        writeOut(`no sensors in ${file}: ingest is open (outpost sensors add ID --topics T closes it)\n`);
        return 0;
      }
      for (const s of reg.sensors) {
        const extras = [s.rateLimit ? `${s.rateLimit.perSecond}/s` : "", s.allowPriority ? "priority" : "", s.allowNotBefore ? "not-before" : ""].filter(Boolean);
        writeOut(`${s.id.padEnd(20)} ${s.topics.join(",").padEnd(30)} ${s.credentials.map((c) => `${c.kind}:${c.id}`).join(" ")}${extras.length ? `  ${extras.join(" ")}` : ""}\n`);
      }
      return 0;
    }
    default:
      throw new UsageError(`Unknown subcommand ${JSON.stringify(sub)}: use add, list, revoke or rotate`);
  }
}

async function _save(file: string, reg: RegistryFile): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeRegistry(file, reg);
}
