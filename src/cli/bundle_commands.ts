import type { BundleCanaryView } from "../ota/manager.ts";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { generateKeyPair, readSigningKey } from "../ota/keys.ts";
import { packDirectory, parseDuration } from "../ota/pack.ts";
import { env, writeErr, writeOut } from "../runtime/process.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { adminHeaders, canaryFlags, hostRequest } from "./client.ts";
import { COMMANDS } from "./specs.ts";


/** `outpost keygen [--out DIR] [--name NAME]`: an Ed25519 key pair for signing bundles. */
export async function keygenCommand(args: string[]): Promise<number> {
  const { values: f } = parseFlags(args, {}, COMMANDS.find((c) => c.name === "keygen")!.flags);
  const dir = String(f.out);
  await mkdir(dir, { recursive: true });
  const k = await generateKeyPair();
  const priv = join(dir, `${f.name}.key`);
  const pub = join(dir, `${f.name}.pub`);
  await writeFile(priv, k.privateText, { mode: 0o600, flag: "wx" });
  await writeFile(pub, k.publicText, { flag: "wx" });
  writeOut(`key ${k.id}\n  private: ${priv} (keep it off the devices)\n  public:  ${pub} (give it to devices: --trust ${pub})\n`);
  return 0;
}

/** `outpost pack <dir> --version X --key K[,K2] [--release N] [--name NAME] [--expires-in 30d] [--out FILE]`. */
export async function packCommand(args: string[]): Promise<number> {
  const { values: f, positional } = parseFlags(args, {}, COMMANDS.find((c) => c.name === "pack")!.flags);
  const dir = positional[0];
  if (!dir || !f.version || !f.key) throw new UsageError("Usage: outpost pack <dir> --version X --key FILE[,FILE] [--release N] [--name NAME] [--expires-in 30d] [--out FILE]");
  const keys = await Promise.all(String(f.key).split(",").map((k) => readSigningKey(k.trim())));
  // Seconds since the epoch grow with every pack unless a release number is given.
  const release = (f.release as number | undefined) ?? Math.floor(Date.now() / 1000);
  const { bytes, manifest } = await packDirectory({
    dir, name: String(f.name), version: String(f.version), release, expiresInMs: parseDuration(String(f["expires-in"])), keys,
    runtimes: String(f.runtimes).split(",").map((s) => s.trim()).filter(Boolean), rollback: f.rollback === true,
  });
  const out = String(f.out ?? `${manifest.name}-${manifest.version}.outpost`);
  await writeFile(out, bytes);
  writeOut(`${out}: ${manifest.name} ${manifest.version}, release ${manifest.release}, ${manifest.files.length} files, ${bytes.length} bytes, ` +
    `expires ${new Date(manifest.expires).toISOString()}, signed by ${keys.map((k) => k.id).join(", ")}\n`);
  return 0;
}

/** `outpost push <bundle> --to URL [--admin-token T]`: upload with progress; prints the host's answer. */
export async function pushCommand(args: string[]): Promise<number> {
  const { values: f, positional } = parseFlags(args, env(), COMMANDS.find((c) => c.name === "push")!.flags);
  const file = positional[0];
  if (!file || !f.to) throw new UsageError("Usage: outpost push <bundle> --to http://device:8080 [--admin-token TOKEN]");
  const bytes = await readFile(file);
  const total = bytes.length;
  let sent = 0;
  let shown = -1;
  const chunk = 64 * 1024;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= total) return c.close();
      const part = bytes.subarray(sent, Math.min(total, sent + chunk));
      sent += part.length;
      const pct = Math.floor((100 * sent) / total);
      if (pct !== shown) writeErr(`\ruploading ${file}: ${sent} / ${total} bytes (${(shown = pct)} %)`);
      c.enqueue(part);
    },
  });
  const c = canaryFlags(f);
  const q = c ? `?${new URLSearchParams({ canary: String(c.share), readings: String(c.readings), for: String(c.for), maxErrorRate: String(c.maxErrorRate) })}` : "";
  const res = await hostRequest(String(f.to), `/v1/bundles${q}`, {
    method: "POST",
    body,
    headers: { "content-type": "application/vnd.outpost.bundle", "content-length": String(total), ...adminHeaders(f) },
    duplex: "half",
  } as RequestInit);
  writeErr("\n");
  const text = await res.text();
  if (f.json) writeOut(`${text}\n`);
  else {
    const v = JSON.parse(text) as { release?: number; name?: string; version?: string; status?: string; message?: string; activationMs?: number };
    writeOut(!res.ok ? `${res.status} ${v.message ?? text}\n`
      : v.status === "canary" ? `${res.status} release ${v.release}: ${v.name} ${v.version} runs as a canary on ${f.canary} % of the readings (outpost bundles shows it)\n`
      : `${res.status} release ${v.release}: ${v.name} ${v.version} is ${v.status} (activated in ${v.activationMs} ms)\n`);
  }
  return res.ok ? 0 : 1;
}

/** `outpost bundles --url URL [--admin-token T] [--json]`: the host's releases. */
export async function bundlesCommand(args: string[]): Promise<number> {
  const { values: f, positional } = parseFlags(args, env(), COMMANDS.find((c) => c.name === "bundles")!.flags);
  const auth = adminHeaders(f);
  if (positional[0] === "use-directory") {
    const r = await hostRequest(String(f.url), "/v1/bundles/use-directory", { method: "POST", headers: auth });
    const t = await r.text();
    if (f.json || !r.ok) writeOut(`${f.json ? "" : `${r.status} `}${f.json ? t : (JSON.parse(t) as { message?: string }).message ?? t}\n`);
    else writeOut(`the host serves its --workers directory again (${(JSON.parse(t) as { dir: string }).dir})\n`);
    return r.ok ? 0 : 1;
  }
  if (positional[0] === "stop-canary") {
    const r = await hostRequest(String(f.url), "/v1/bundles/canary", { method: "DELETE", headers: auth });
    const t = await r.text();
    if (f.json) writeOut(`${t}\n`);
    else writeOut(r.ok ? "the canary release is being rolled back; the active release keeps every reading\n" : `${r.status} ${(JSON.parse(t) as { message?: string }).message ?? t}\n`);
    return r.ok ? 0 : 1;
  }
  if (positional.length) throw new UsageError(`Unknown bundles command ${JSON.stringify(positional[0])}; see outpost bundles --help`);
  const res = await hostRequest(String(f.url), "/v1/bundles", { headers: auth });
  const text = await res.text();
  if (!res.ok || f.json) {
    writeOut(`${text}\n`);
    return res.ok ? 0 : 1;
  }
  type R = { release: number; name: string; version: string; source: string; activatedAt: string };
  type Fleet = { domain: string; kv: string; key: string; watching: boolean; desired: { release: number; object: string } | null; lastOutcome: { release: number; result: string; message?: string } | null; lastError: { message: string } | null };
  const v = JSON.parse(text) as { active: R; previous: R | null; staged: R & { step: string } | null; probation: { release: number; handled: number; failed: number } | null; failed: (R & { reason: string; at: string })[]; fleet?: Fleet | null; canary?: BundleCanaryView | null };
  const row = (r: R) => (r.source === "workers" ? "--workers directory" : `release ${r.release}: ${r.name} ${r.version} (since ${r.activatedAt})`);
  writeOut(`active:    ${row(v.active)}${v.probation ? ` — on probation, ${v.probation.failed} of ${v.probation.handled} failed` : ""}\n`);
  writeOut(`previous:  ${v.previous ? row(v.previous) : "none"}\n`);
  writeOut(`staged:    ${v.staged ? `release ${v.staged.release} (${v.staged.step})` : "none"}\n`);
  const c = v.canary;
  if (c) {
    writeOut(`canary:    release ${c.release} (${c.name} ${c.version}) ${c.state}${c.reason ? `: ${c.reason}` : ""}; ${Math.round(c.policy.share * 1000) / 10} % of the readings\n`);
    for (const h of c.handlers) {
      const x = h.canary?.canary;
      writeOut(`           ${h.name}: ${h.decided ?? "running"}${x ? `, ${x.attempts} attempts, ${x.failed} failed, ${x.deadLettered} dead letters, p99 ${x.p99Ms ?? "n/a"} ms` : ""}\n`);
    }
    if (c.added.length) writeOut(`           new in the release (start at promotion): ${c.added.join(", ")}\n`);
  }
  for (const x of v.failed) writeOut(`failed:    release ${x.release}: ${x.name} ${x.version} at ${x.at}: ${x.reason}\n`);
  const fl = v.fleet;
  if (fl) {
    writeOut(`fleet:     ${fl.kv}/${fl.key} in domain ${fl.domain} (${fl.watching ? "watching" : "not connected"}), desired ${fl.desired ? `release ${fl.desired.release} (${fl.desired.object})` : "none"}\n`);
    if (fl.lastOutcome) writeOut(`           release ${fl.lastOutcome.release}: ${fl.lastOutcome.result}${fl.lastOutcome.message ? `: ${fl.lastOutcome.message}` : ""}\n`);
    if (fl.lastError) writeOut(`           last error: ${fl.lastError.message}\n`);
  }
  return 0;
}
