import { Hono } from "hono";
import { mkdir, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { readBody } from "../http/body.ts";
import { ProblemError } from "../http/problem.ts";
import { reply } from "../http/reply.ts";
import type { HandlerRegistry } from "../host/registry.ts";
import type { ShadowVerdict } from "./shadow.ts";
import { canaryPolicy, CanaryPolicyError, parseWindow, type CanaryPolicy } from "./canary.ts";

const _MAX_SOURCE = 4 * 1024 * 1024;

/**
 * `POST /v1/handlers/:name/shadow?readings=N&for=DURATION` with the candidate's source as the
 * body (`Outpost-File-Name` names it: its extension says TypeScript or JavaScript): run it in
 * shadow. `DELETE /v1/handlers/:name/shadow` ends it. The comparison is in `GET /v1/handlers`.
 */
export function shadowRoutes(o: {
  registry: () => HandlerRegistry;
  dataDir: string;
  onVerdict?: ((handler: string, v: ShadowVerdict) => void) | undefined;
  /** Told how each canary ended. */
  onCanary?: ((handler: string, promoted: boolean) => void) | undefined;
  /** An OTA release serves the handlers: a canary of a file would be overwritten by it. */
  releaseActive?: (() => boolean) | undefined;
}): Hono {
  const app = new Hono();
  /** The candidate's source from the body, kept under the data directory. */
  const candidateFile = async (c: { req: { raw: Request; header(n: string): string | undefined }; env: unknown }, name: string, kind: "shadow" | "canary") => {
    if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$/.test(name) || name.includes("..")) throw new ProblemError(400, "invalid_name", "A handler name is its file name without the extension");
    const file = basename(c.req.header("outpost-file-name") ?? `${name}.ts`);
    if (!/\.(ts|mts|js|mjs)$/.test(file)) throw new ProblemError(400, "invalid_file_name", "Outpost-File-Name must end in .ts, .mts, .js or .mjs");
    const source = await readBody(c.req.raw, _MAX_SOURCE, c.env);
    if (!source.length) throw new ProblemError(400, "no_source", "The body must be the candidate handler's source");
    const dir = join(o.dataDir, kind, name);
    await mkdir(dir, { recursive: true });
    const path = join(dir, file);
    await writeFile(path, source);
    return path;
  };
  const fail = (e: unknown): never => {
    const status = (e as { status?: number }).status;
    if (status === 404) throw new ProblemError(404, "unknown_handler", (e as Error).message);
    if (status === 409) throw new ProblemError(409, "already_running", (e as Error).message);
    throw new ProblemError(400, "candidate_failed", (e as Error).message);
  };
  app.post("/v1/handlers/:name/canary", async (c) => {
    const name = c.req.param("name");
    if (o.releaseActive?.()) throw new ProblemError(409, "release_active", "An OTA release serves the handlers: release the new version as a bundle, as a canary (outpost push BUNDLE --canary 10, or outpost publish --canary 10)");
    const policy = policyOf((k) => c.req.query(k));
    const path = await candidateFile(c, name, "canary");
    try {
      const view = await o.registry().startCanary(name, path, policy, (promoted) => o.onCanary?.(name, promoted));
      return reply(c.req.raw, 201, { handler: name, canary: view });
    } catch (e) {
      return fail(e);
    }
  });
  app.delete("/v1/handlers/:name/canary", (c) => {
    const view = o.registry().stopCanary(c.req.param("name"));
    if (!view) throw new ProblemError(404, "no_canary", `Handler ${c.req.param("name")} has no canary`);
    return reply(c.req.raw, 200, { handler: c.req.param("name"), canary: view });
  });
  app.post("/v1/handlers/:name/shadow", async (c) => {
    const name = c.req.param("name");
    const readings = Number(c.req.query("readings") ?? "1000");
    if (!Number.isInteger(readings) || readings < 1 || readings > 10_000_000) throw new ProblemError(400, "invalid_limit", "readings must be an integer from 1 to 10000000");
    const ms = parseWindow(c.req.query("for") ?? "1h");
    if (ms === undefined) throw new ProblemError(400, "invalid_duration", "for must be a duration such as 90s, 15m, 2h or 1d (at most 7d)");
    const path = await candidateFile(c, name, "shadow");
    try {
      const view = await o.registry().startShadow(name, path, { readings, ms }, (v) => o.onVerdict?.(name, v));
      return reply(c.req.raw, 201, { handler: name, shadow: view });
    } catch (e) {
      return fail(e);
    }
  });
  app.delete("/v1/handlers/:name/shadow", async (c) => {
    const view = await o.registry().stopShadow(c.req.param("name"));
    if (!view) throw new ProblemError(404, "no_shadow", `Handler ${c.req.param("name")} has no shadow run`);
    return reply(c.req.raw, 200, { handler: c.req.param("name"), shadow: view });
  });
  return app;
}

/**
 * The canary policy of a request's query (`share`, `readings`, `for`, `maxErrorRate`,
 * `maxDeadLetters`, `maxP99Ratio`).
 * @throws ProblemError 400 `invalid_parameter` or `invalid_duration`
 */
export function policyOf(q: (k: string) => string | undefined): CanaryPolicy {
  try {
    return canaryPolicy({ share: q("share"), readings: q("readings"), for: q("for"), maxErrorRate: q("maxErrorRate"), maxDeadLetters: q("maxDeadLetters"), maxP99Ratio: q("maxP99Ratio") });
  } catch (e) {
    if (!(e instanceof CanaryPolicyError)) throw e;
    throw new ProblemError(400, e.message.startsWith("for ") ? "invalid_duration" : "invalid_parameter", e.message);
  }
}
