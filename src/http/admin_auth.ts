import type { MiddlewareHandler } from "hono";
import { reply } from "./reply.ts";

/**
 * Bearer-token guard for the admin routes (`/v1/dlq…`, `/v1/bundles…`). Ingest never shares it.
 * Without a configured token the admin routes answer 403: they are off, not open.
 * @param token the value of `--admin-token`, or undefined
 */
export function adminAuth(token: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (!token) {
      return reply(c.req.raw, 403, { error: "admin_disabled", message: "Admin routes are off: start outpost with --admin-token (or OUTPOST_ADMIN_TOKEN)" });
    }
    const given = /^Bearer (.+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
    if (!given || !_equal(given, token)) {
      return reply(c.req.raw, 401, { error: "unauthorized", message: "This route needs Authorization: Bearer <admin token>" }, { "www-authenticate": 'Bearer realm="outpost"' });
    }
    await next();
  };
}

/** Constant-time string comparison. */
function _equal(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}
