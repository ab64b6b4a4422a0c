import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { ProblemError } from "../http/problem.ts";
import { LEVELS, type Level } from "../util/log.ts";
import type { EventBus } from "./events.ts";

/**
 * `GET /v1/events?handler=H&level=L`: the live tail as server-sent events (`event: outcome`,
 * `log` or `dropped`, `data:` one JSON object), until the client goes. A comment line every 15 s
 * keeps idle connections open through proxies.
 */
export function eventRoutes(bus: EventBus): Hono {
  const app = new Hono();
  app.get("/v1/events", (c) => {
    const handler = c.req.query("handler") || undefined;
    const level = c.req.query("level") || undefined;
    if (level !== undefined && !(level in LEVELS)) throw new ProblemError(400, "invalid_level", `level must be one of ${Object.keys(LEVELS).join(", ")}`);
    return streamSSE(c, async (stream) => {
      const ac = new AbortController();
      stream.onAbort(() => ac.abort());
      c.req.raw.signal?.addEventListener("abort", () => ac.abort());
      const keepalive = setInterval(() => void stream.write(": keepalive\n\n").catch(() => ac.abort()), 15_000);
      await stream.writeSSE({ event: "hello", data: JSON.stringify({ ts: new Date().toISOString(), handler: handler ?? null, level: level ?? null }) });
      try {
        for await (const e of bus.subscribe({ handler, level: level as Level | undefined }, ac.signal)) {
          await stream.writeSSE({ event: e.type, data: JSON.stringify(e) });
        }
      } finally {
        clearInterval(keepalive);
      }
    });
  });
  return app;
}
