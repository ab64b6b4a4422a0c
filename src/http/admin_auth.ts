import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import type { Logger } from "../util/log.ts";
import type { UiSessions } from "../ui/sessions.ts";
import { reply } from "./reply.ts";

/** The tokens of the admin surface: the admin token, and optionally a read-only one. */
export interface AdminTokens {
  admin: string;
  /** Reads `/v1/handlers`, `/metrics` (and nothing that changes anything). */
  read?: string | undefined;
}

/** Where a host keeps the admin token it made itself. */
export function adminTokenFile(dataDir: string): string {
  return join(dataDir, "admin.token");
}

/**
 * The admin token: the configured one, or the one in `<data-dir>/admin.token`, made at the first
 * start (32 random bytes, mode 0600) when none is configured, so the admin surface is never open.
 * @returns the token and where it came from, for the log
 */
export async function resolveAdminToken(configured: string | undefined, dataDir: string): Promise<{ token: string; from: string }> {
  if (configured) return { token: configured, from: "configuration" };
  const file = adminTokenFile(dataDir);
  try {
    const t = (await readFile(file, "utf8")).trim();
    if (t) return { token: t, from: file };
  } catch { /* made below */ }
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const token = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return { token, from: `${file} (made now)` };
}

/**
 * Bearer-token guard of the admin surface: hono's bearer-auth (constant-time comparison) with our
 * answers. `level` "read" also takes the read-only token. Ingest never shares either.
 */
export function adminAuth(tokens: AdminTokens, level: "admin" | "read", sessions?: UiSessions): MiddlewareHandler {
  const accepted = level === "read" && tokens.read ? [tokens.admin, tokens.read] : [tokens.admin];
  const what = level === "read" ? "the admin token or the read-only token (--read-token)" : "the admin token";
  const unauthorized = (c: Context) =>
    reply(c.req.raw, 401, { error: "unauthorized", message: `This route needs Authorization: Bearer <${what}>` }, { "www-authenticate": 'Bearer realm="outpost"' });
  const bearer = bearerAuth({
    token: accepted,
    realm: "outpost",
    noAuthenticationHeader: { message: unauthorized },
    invalidAuthenticationHeader: { message: unauthorized },
    invalidToken: { message: unauthorized },
  });
  if (!sessions) return bearer;
  // The dashboard's same-origin calls: a session cookie (with its CSRF token for changes) instead.
  return async (c, next) => {
    if (!c.req.header("authorization") && sessions.allows(c, level)) return await next();
    return await bearer(c, next);
  };
}

/** A log line for every admin action that changes something: what, on which route, the answer. */
export function auditLog(log: Logger): MiddlewareHandler {
  return async (c, next) => {
    await next();
    if (c.req.method === "GET" || c.req.method === "HEAD") return;
    const url = new URL(c.req.url);
    const who = c.req.header("authorization") ? "the admin token" : "a dashboard session";
    log.info(`${c.req.method} ${url.pathname}${url.search} by ${who} → ${c.res.status}`);
  };
}

/**
 * Refuse requests whose `Host` is not one of the host's names, so a web page cannot reach the
 * device through DNS rebinding (its requests carry the attacker's host name).
 * @param allowed lower-case host names and addresses; `*` allows any
 */
export function hostCheck(allowed: ReadonlySet<string>): MiddlewareHandler {
  return async (c, next) => {
    const host = c.req.header("host");
    if (host !== undefined && !allowed.has("*")) {
      const name = (host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "")).toLowerCase();
      if (!allowed.has(name)) {
        return reply(c.req.raw, 403, {
          error: "host_not_allowed",
          message: `Host ${JSON.stringify(host.slice(0, 100))} is not a name of this host; add it with --allowed-hosts if it is`,
        });
      }
    }
    await next();
  };
}
