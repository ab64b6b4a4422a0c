import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { ProblemError } from "./problem.ts";
import { reply } from "./reply.ts";

/**
 * Bearer-token guard for the admin routes (`/v1/dlq…`, `/v1/bundles…`, `/v1/store…`): hono's
 * bearer-auth (constant-time comparison) with our answers. Ingest never shares it. Without a
 * configured token the admin routes answer 403: they are off, not open.
 * @param token the value of `--admin-token`, or undefined
 */
export function adminAuth(token: string | undefined): MiddlewareHandler {
  if (!token) {
    return () => {
      throw new ProblemError(403, "admin_disabled", "Admin routes are off: start outpost with --admin-token (or OUTPOST_ADMIN_TOKEN)");
    };
  }
  const unauthorized = (c: Context) =>
    reply(c.req.raw, 401, { error: "unauthorized", message: "This route needs Authorization: Bearer <admin token>" }, { "www-authenticate": 'Bearer realm="outpost"' });
  return bearerAuth({
    token,
    realm: "outpost",
    noAuthenticationHeader: { message: unauthorized },
    invalidAuthenticationHeader: { message: unauthorized },
    invalidToken: { message: unauthorized },
  });
}
