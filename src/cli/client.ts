import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { credsAuthenticator, type NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { ConfigError } from "../errors.ts";
import { canaryPolicy } from "../release/canary.ts";
import { UsageError, type FlagValues } from "./flags.ts";

/**
 * The `Authorization` header of a client command: `--admin-token` (or OUTPOST_ADMIN_TOKEN, or
 * `--admin-token-file`), else the token a local host made in `<--data-dir>/admin.token`.
 */
export function adminHeaders(f: FlagValues): Record<string, string> {
  let token = f["admin-token"] as string | undefined;
  const file = (f["admin-token-file"] as string | undefined) ?? (token ? undefined : join(String(f["data-dir"] ?? "./.outpost"), "admin.token"));
  if (!token && file) {
    try {
      token = readFileSync(file, "utf8").trim() || undefined;
    } catch { /* none: the host answers 401 and says what it needs */ }
  }
  return token ? { authorization: `Bearer ${token}` } : {};
}

/**
 * A request to a running host from a client command. A host that cannot be reached is named,
 * with what to check, instead of "fetch failed".
 * @param base the host's URL (`--url`, `--to`)
 * @param path the route
 */
export async function hostRequest(base: string, path: string, init: RequestInit = {}): Promise<Response> {
  let url: URL;
  try {
    url = new URL(path, base);
  } catch {
    throw Object.assign(new Error(`${JSON.stringify(base)} is not a URL: pass --url http://HOST:PORT`), { name: "UsageError" });
  }
  try {
    return await fetch(url, init);
  } catch (e) {
    const why = (e as { cause?: { code?: string; message?: string } }).cause;
    throw Object.assign(new Error(`Cannot reach outpost at ${url.origin} (${why?.code ?? why?.message ?? (e as Error).message}): is it running there? Pass --url`), {
      name: "HostUnreachableError",
    });
  }
}

/**
 * JSON calls to a running host with the admin token: answers the body, throws ConfigError with
 * the host's message for a status that is not 2xx.
 */
export function hostCaller(f: FlagValues): (method: string, path: string, init?: RequestInit) => Promise<any> {
  const base = String(f.url).replace(/\/$/, "");
  const auth = adminHeaders(f);
  return async (method, path, init = {}) => {
    const res = await hostRequest(base, path, { method, ...init, headers: { ...auth, ...(init.headers as Record<string, string> | undefined) } });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new ConfigError(`${method} ${path}: ${res.status} ${body.message ?? res.statusText}`);
    return body;
  };
}

/** Upload a candidate handler's source to `POST /v1/handlers/NAME/<kind>?query` (shadow runs, canaries). */
export async function uploadCandidate(call: ReturnType<typeof hostCaller>, kind: "shadow" | "canary", name: string, file: string, query: Record<string, string>): Promise<any> {
  let source: Uint8Array;
  try {
    source = readFileSync(file);
  } catch (e) {
    throw new ConfigError(`Cannot read ${file}: ${(e as Error).message}`);
  }
  const base = basename(file);
  return await call("POST", `/v1/handlers/${encodeURIComponent(name)}/${kind}?${new URLSearchParams(query)}`, {
    body: source as BodyInit,
    headers: { "content-type": "text/plain", "outpost-file-name": base },
  });
}

/** A running host's recording of `topic` (`--since`, `--limit`): the CBOR sequence and how many readings it holds. */
export async function fetchRecording(f: FlagValues, topic: string): Promise<{ bytes: Uint8Array; count: string }> {
  const q = new URLSearchParams({ limit: String(f.limit) });
  if (f.since !== undefined) q.set("since", String(f.since));
  const res = await hostRequest(String(f.url).replace(/\/$/, ""), `/v1/record/${topic}?${q}`, { headers: adminHeaders(f) });
  if (!res.ok) throw new ConfigError(`GET /v1/record/${topic}: ${res.status} ${((await res.json().catch(() => ({}))) as { message?: string }).message ?? res.statusText}`);
  return { bytes: new Uint8Array(await res.arrayBuffer()), count: res.headers.get("outpost-record-count") ?? "?" };
}

/** Connect to the NATS server of `--nats` (a hub) with the `--nats-*` credentials. */
export async function connectNats(f: FlagValues, name: string): Promise<NatsConnection> {
  if (!f.nats) throw new UsageError("--nats URL: the hub's NATS server");
  return await connect({
    servers: String(f.nats).split(",").map((s) => s.trim()),
    name,
    timeout: 5_000,
    ...(f["nats-user"] !== undefined ? { user: String(f["nats-user"]), pass: String(f["nats-pass"] ?? "") } : {}),
    ...(f["nats-token"] !== undefined ? { token: String(f["nats-token"]) } : {}),
    ...(f["nats-creds"] ? { authenticator: credsAuthenticator(await readFile(String(f["nats-creds"]))) } : {}),
  });
}

/**
 * The `--canary PERCENT` flags of `outpost push` and `outpost publish` (`--canary-readings`,
 * `--canary-for`, `--canary-max-error-rate`), checked as the host checks them.
 * @returns undefined without `--canary`
 * @throws UsageError naming what is out of range
 */
export function canaryFlags(f: FlagValues): { share: number; readings: number; for: string; maxErrorRate: number } | undefined {
  if (f.canary === undefined) return undefined;
  const c = { share: Number(f.canary), readings: Number(f["canary-readings"]), for: String(f["canary-for"]), maxErrorRate: Number(f["canary-max-error-rate"]) };
  try {
    canaryPolicy(c);
  } catch (e) {
    throw new UsageError(`--canary: ${(e as Error).message}`);
  }
  return c;
}
