import { Hono } from "hono";
import { mkdir, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { readBody } from "../http/body.ts";
import { ProblemError } from "../http/problem.ts";
import { reply } from "../http/reply.ts";
import type { HandlerRegistry } from "../host/registry.ts";
import type { ShadowVerdict } from "./shadow.ts";
import { CANARY_DEFAULTS, type CanaryPolicy } from "./canary.ts";

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
  const num = (v: string | undefined, d: number, min: number, max: number, what: string) => {
    const x = v === undefined ? d : Number(v);
    if (!Number.isFinite(x) || x < min || x > max) throw new ProblemError(400, "invalid_parameter", `${what} must be a number from ${min} to ${max}`);
    return x;
  };
  app.post("/v1/handlers/:name/canary", async (c) => {
    const name = c.req.param("name");
    if (o.releaseActive?.()) throw new ProblemError(409, "release_active", "An OTA release serves the handlers: release the new version as a bundle instead (canary bundles are not built yet)");
    const ms = _duration(c.req.query("for") ?? "10m");
    if (ms === undefined) throw new ProblemError(400, "invalid_duration", "for must be a duration such as 90s, 15m, 2h or 1d (at most 7d)");
    const policy: CanaryPolicy = {
      share: num(c.req.query("share"), 10, 0.1, 100, "share (percent)") / 100,
      readings: Math.round(num(c.req.query("readings"), CANARY_DEFAULTS.readings, 1, 10_000_000, "readings")),
      ms,
      maxErrorRate: num(c.req.query("maxErrorRate"), CANARY_DEFAULTS.maxErrorRate * 100, 0, 100, "maxErrorRate (percent)") / 100,
      maxDeadLetters: Math.round(num(c.req.query("maxDeadLetters"), CANARY_DEFAULTS.maxDeadLetters, 0, 1e9, "maxDeadLetters")),
      maxP99Ratio: num(c.req.query("maxP99Ratio"), CANARY_DEFAULTS.maxP99Ratio, 1, 1000, "maxP99Ratio"),
    };
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
    const ms = _duration(c.req.query("for") ?? "1h");
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

function _duration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s"];
  return ms >= 1 && ms <= 7 * 86_400_000 ? ms : undefined;
}
