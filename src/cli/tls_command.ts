/**
 * `outpost tls self-signed`: a key and a self-signed certificate for a first HTTPS start. Made by
 * the system's `openssl` (Debian, Raspberry Pi OS and every gateway image have it): writing X.509
 * ourselves would mean an ASN.1 encoder in the single file, and the libraries that do it weigh
 * more than the whole host. For production, use a certificate from your own CA.
 * @module
 */
import { chmod, mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { run, writeOut } from "../runtime/process.ts";
import { loadTls } from "../http/tls.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

/** `outpost tls self-signed [--out DIR] [--name NAME] [--days N]`. */
export async function tlsCommand(args: string[]): Promise<number> {
  const { values: f, positional } = parseFlags(args, {}, COMMANDS.find((c) => c.name === "tls")!.flags);
  if (positional[0] !== "self-signed" || positional.length > 1) throw new UsageError("Usage: outpost tls self-signed [--out DIR] [--name NAME] [--days N]");
  const dir = resolve(String(f.out));
  const name = String(f.name ?? hostname());
  if (!/^[A-Za-z0-9.-]+$/.test(name)) throw new UsageError(`--name ${JSON.stringify(name)}: a host name (letters, digits, . and -)`);
  await mkdir(dir, { recursive: true });
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const r = await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", String(f.days), "-subj", `/CN=${name}`,
    "-addext", `subjectAltName=DNS:${name},DNS:localhost,IP:127.0.0.1,IP:::1`,
  ]).catch((e: Error) => ({ code: -1, output: e.message }));
  if (r.code !== 0) throw new ConfigError(`openssl could not make the certificate (is it installed? apt-get install openssl): ${r.output.slice(0, 300)}`);
  await chmod(key, 0o600);
  const t = await loadTls({ certFile: cert, keyFile: key });
  writeOut(`wrote ${cert} and ${key} (mode 0600): ${t.subject}, valid to ${t.validTo}
  serve HTTPS:  outpost run --tls-cert ${cert} --tls-key ${key}
  clients trust it with its file (curl --cacert ${cert}); SHA-256 ${t.fingerprint}
`);
  return 0;
}
