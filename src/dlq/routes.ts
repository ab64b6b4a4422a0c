import { Hono } from "hono";
import { ProblemError } from "../http/problem.ts";
import { reply } from "../http/reply.ts";
import type { DlqEntry, DlqStore } from "./store.ts";

/**
 * The dead-letter admin API (mounted behind the admin token):
 * `GET /v1/dlq`, `GET /v1/dlq/:id`, `POST /v1/dlq/:id/replay`, `POST /v1/dlq/replay?handler=…`,
 * `DELETE /v1/dlq/:id`.
 */
export function dlqRoutes(store: () => DlqStore): Hono {
  const app = new Hono();
  const notFound = (id: string) => new ProblemError(404, "not_found", `No dead letter with id ${id}`);
  const id = (s: string) => (/^\d+$/.test(s) ? Number(s) : NaN);

  app.get("/v1/dlq", async (c) => {
    const q = c.req.query();
    const page = await store().list({
      handler: q.handler,
      topic: q.topic,
      after: q.after ? Number(q.after) : undefined,
      limit: q.limit ? Number(q.limit) : undefined,
    });
    return reply(c.req.raw, 200, { entries: page.entries.map(_json), next: page.next });
  });
  app.post("/v1/dlq/replay", async (c) => {
    const handler = c.req.query("handler");
    if (!handler) throw new ProblemError(400, "missing_handler", "Bulk replay needs ?handler=<name>");
    const replayed: { id: number; seq: number }[] = [];
    let after: number | null = 0;
    // Bounded: each pass deletes what it replays, so the walk ends with the stream.
    while (after !== null) {
      const page: { entries: DlqEntry[]; next: number | null } = await store().list({ handler, after, limit: 500 });
      for (const e of page.entries) {
        const seq = await store().replay(e.id);
        if (seq !== undefined) replayed.push({ id: e.id, seq });
      }
      after = page.next;
    }
    return reply(c.req.raw, 200, { handler, replayed: replayed.length, entries: replayed });
  });
  app.get("/v1/dlq/:id", async (c) => {
    const e = await store().get(id(c.req.param("id")));
    if (!e) throw notFound(c.req.param("id"));
    return reply(c.req.raw, 200, _json(e));
  });
  app.post("/v1/dlq/:id/replay", async (c) => {
    const seq = await store().replay(id(c.req.param("id")));
    if (seq === undefined) throw notFound(c.req.param("id"));
    return reply(c.req.raw, 200, { id: Number(c.req.param("id")), seq });
  });
  app.delete("/v1/dlq/:id", async (c) => {
    if (!(await store().delete(id(c.req.param("id"))))) throw notFound(c.req.param("id"));
    return reply(c.req.raw, 200, { id: Number(c.req.param("id")), deleted: true });
  });
  return app;
}

/** JSON cannot carry bytes or big integers: show them readably (CBOR answers keep them exact). */
function _json(e: DlqEntry): unknown {
  return JSON.parse(JSON.stringify(e, (_k, v) => {
    if (typeof v === "bigint") return v.toString();
    if (v instanceof Uint8Array) return { bytes: Array.from(v) };
    return v;
  }));
}
