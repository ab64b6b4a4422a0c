import { Hono } from "hono";
import { BodyLimitError, readBody } from "../http/body.ts";
import { ProblemError } from "../http/problem.ts";
import { reply } from "../http/reply.ts";
import { policyOf } from "../release/routes.ts";
import type { Logger } from "../util/log.ts";
import { BundleError } from "./errors.ts";
import type { BundleManager } from "./manager.ts";

/**
 * `POST /v1/bundles` (install a signed bundle; `?canary=10` runs its changed handlers as canaries
 * first), `DELETE /v1/bundles/canary` (roll a canary release back) and `GET /v1/bundles` (active,
 * previous, staged, failed releases, the canary). The host puts the admin-token guard in front.
 * @param bundles the manager; undefined while the host starts
 */
export function bundleRoutes(bundles: () => BundleManager | undefined, maxBytes: number, log: Logger): Hono {
  const app = new Hono();
  app.get("/v1/bundles", (c) => {
    const m = bundles();
    if (!m) throw _starting();
    return reply(c.req.raw, 200, m.view());
  });
  app.post("/v1/bundles/use-directory", async (c) => {
    const m = bundles();
    if (!m) throw _starting();
    try {
      return reply(c.req.raw, 200, { dir: await m.useDirectory(), source: m.source });
    } catch (e) {
      if (e instanceof BundleError) throw new ProblemError(e.status, e.code, e.message, { name: e.name, active: m.activeRelease });
      throw e;
    }
  });
  app.delete("/v1/bundles/canary", (c) => {
    const m = bundles();
    if (!m) throw _starting();
    if (!m.canaryDecision()) throw new ProblemError(404, "no_canary", "No release runs as a canary");
    return reply(c.req.raw, 200, { canary: m.stopCanary() });
  });
  app.post("/v1/bundles", async (c) => {
    const m = bundles();
    if (!m) throw _starting();
    // ?canary=PERCENT (with readings, for, maxErrorRate, maxDeadLetters, maxP99Ratio): a canary release.
    const q = (k: string) => c.req.query(k);
    const canary = q("canary") === undefined ? undefined : policyOf((k) => q(k === "share" ? "canary" : k));
    log.info("bundle step: receiving upload");
    let bytes: Uint8Array;
    try {
      bytes = await readBody(c.req.raw, maxBytes);
    } catch (e) {
      if (e instanceof BodyLimitError) throw new ProblemError(413, "too_large", `Cannot accept bundle: it is above the limit of ${maxBytes} bytes (--max-bundle-size)`);
      throw e;
    }
    try {
      const r = await m.install(bytes, "POST /v1/bundles", { canary });
      return reply(c.req.raw, 201, r);
    } catch (e) {
      if (e instanceof BundleError) {
        log.warn(e.message);
        throw new ProblemError(e.status, e.code, e.message, { name: e.name, active: m.activeRelease });
      }
      throw e;
    }
  });
  return app;
}

function _starting(): ProblemError {
  return new ProblemError(503, "starting", "The host is still starting");
}
