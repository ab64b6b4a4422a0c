import { Hono } from "hono";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { isTopic } from "../sdk/definition.ts";
import { ProblemError } from "../http/problem.ts";
import { readRecording } from "./streams.ts";

const _MAX_LIMIT = 100_000;

/**
 * `GET /v1/record/:topic?since=&limit=`: a topic's recorded readings, oldest first, as a CBOR
 * sequence (`application/cbor-seq`, each reading's stored bytes), the file `outpost test` and
 * `outpost replay` read. `Outpost-Record-Count` says how many.
 */
export function recordRoutes(broker: () => { js: JetStreamClient; jsm: JetStreamManager }): Hono {
  const app = new Hono();
  app.get("/v1/record/:topic", async (c) => {
    const topic: string = c.req.param("topic");
    if (!isTopic(topic)) throw new ProblemError(400, "invalid_topic", `${JSON.stringify(String(topic).slice(0, 64))} is not a topic name`);
    const sinceText = c.req.query("since");
    const since = sinceText === undefined ? undefined : _since(sinceText);
    if (since && Number.isNaN(since.getTime())) {
      throw new ProblemError(400, "invalid_since", `since=${JSON.stringify(sinceText)} is not a time: an ISO 8601 date, epoch milliseconds, or a duration ago such as 15m, 2h, 7d`);
    }
    const limitText = c.req.query("limit") ?? "10000";
    const limit = Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > _MAX_LIMIT) throw new ProblemError(400, "invalid_limit", `limit must be an integer from 1 to ${_MAX_LIMIT}`);
    const b = broker();
    const readings = await readRecording(b.js, b.jsm, topic, since, limit);
    if (!readings) {
      throw new ProblemError(404, "not_recorded", `Topic ${topic} is not recorded: give its handler \`record: true\` (or start the host with --record ${topic})`);
    }
    const size = readings.reduce((n, r) => n + r.data.length, 0);
    const body = new Uint8Array(size);
    let at = 0;
    for (const r of readings) {
      body.set(r.data, at);
      at += r.data.length;
    }
    return new Response(body, { status: 200, headers: { "content-type": "application/cbor-seq", "outpost-record-count": String(readings.length) } });
  });
  return app;
}

/** An ISO date, epoch ms, or a duration ago (`90s`, `15m`, `2h`, `7d`). */
function _since(s: string): Date {
  const ago = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(s.trim());
  if (ago) return new Date(Date.now() - Number(ago[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as "s"]);
  return /^\d+$/.test(s.trim()) ? new Date(Number(s)) : new Date(s);
}
