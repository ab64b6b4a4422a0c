/**
 * HTTPS certificates from files: read and checked at start (a bad pair is a start-up error), then
 * watched, so a rotated certificate is served without a restart. A pair that does not check out
 * (half-written, key and certificate that do not belong together) is logged and the one in use
 * is kept.
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { ConfigError } from "../errors.ts";
import type { Server, TlsFiles } from "../runtime/serve.ts";
import type { Logger } from "../util/log.ts";

/** Where the certificate, its key and the client CA are. */
export interface TlsPaths {
  certFile: string;
  keyFile: string;
  clientCaFile?: string | undefined;
}

/**
 * Read and check a certificate and key.
 * @returns the PEM texts, and what the certificate says (for the log)
 * @throws ConfigError naming the file and the problem
 */
export async function loadTls(p: TlsPaths): Promise<{ files: TlsFiles; subject: string; validTo: string; fingerprint: string }> {
  const read = async (f: string, what: string) => {
    try {
      return await readFile(f, "utf8");
    } catch (e) {
      throw new ConfigError(`Cannot read the TLS ${what} ${f}: ${(e as Error).message}`);
    }
  };
  const cert = await read(p.certFile, "certificate");
  const key = await read(p.keyFile, "key");
  const clientCa = p.clientCaFile ? await read(p.clientCaFile, "client CA") : undefined;
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch (e) {
    throw new ConfigError(`${p.certFile} is not a PEM certificate: ${(e as Error).message}`);
  }
  try {
    if (!x.checkPrivateKey(createPrivateKey(key))) throw new Error("the key does not belong to the certificate");
  } catch (e) {
    throw new ConfigError(`${p.keyFile}: ${(e as Error).message}`);
  }
  if (Date.parse(x.validTo) < Date.now()) throw new ConfigError(`${p.certFile} expired on ${x.validTo}`);
  return { files: { cert, key, clientCa }, subject: x.subject.replace(/\n/g, ", "), validTo: x.validTo, fingerprint: x.fingerprint256 };
}

/**
 * Watch the files and give the server a new pair when they change (checked every `everyMs`).
 * @returns stop watching
 */
export function watchTls(p: TlsPaths, server: Server, log: Logger, everyMs = 2_000): () => void {
  let last = "";
  let busy = false;
  const mark = async () => {
    const parts = await Promise.all([p.certFile, p.keyFile, p.clientCaFile].map(async (f) => (f ? await stat(f).then((s) => `${s.mtimeMs}:${s.size}`, () => "gone") : "")));
    return parts.join("|");
  };
  void mark().then((m) => (last = m));
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const m = await mark();
      if (m === last) return;
      last = m;
      const t = await loadTls(p);
      await server.reloadTls?.(t.files);
      log.info(`TLS certificate reloaded: ${t.subject}, valid to ${t.validTo}, SHA-256 ${t.fingerprint.slice(0, 23)}…`);
    } catch (e) {
      log.error(`TLS certificate not reloaded (${(e as Error).message}); the one in use stays`);
    } finally {
      busy = false;
    }
  }, everyMs);
  (timer as { unref?: () => void }).unref?.();
  return () => clearInterval(timer);
}
