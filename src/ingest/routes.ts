import { Hono } from "hono";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { PubAck } from "@nats-io/jetstream";
import type { Broker } from "../broker/connect.ts";
import { encodeCbor, type CborLimits } from "../codec/cbor.ts";
import type { TopicRoute } from "../handlers/registry.ts";
import type { Pressure } from "../dispatch/backpressure.ts";
import { delayedSubject, NOT_BEFORE_HEADER, PRIORITY_HEADER, readingSubject } from "../dispatch/subjects.ts";
import type { Logger } from "../log.ts";
import type { ReadingIssue } from "../sandbox/protocol.ts";
import { ValidatorUnavailableError, type Validator } from "../sandbox/validator.ts";
import { BodyTooLargeError, readBody } from "./body.ts";
import { decodeBody, MalformedBodyError, MEDIA_TYPES } from "./decode.ts";
import { reply } from "./reply.ts";

/** What the ingest routes need from the host. */
export interface IngestDeps {
  broker: () => Broker | undefined;
  route: (topic: string) => TopicRoute | undefined;
  topics: () => string[];
  validator: Validator;
  /** Back-pressure: a refusal for the topic, or undefined to accept. */
  pressure?: (topic: string) => Pressure | undefined;
  bodyLimit: number;
  maxReadings: number;
  cborLimits: CborLimits;
  log: Logger;
}

/** Per reading in a 202 answer. */
export interface StoredReading {
  index: number;
  seq: number;
  duplicate?: true;
}

const _MAX_LISTED_ISSUES = 100;

/**
 * `POST /v1/ingest/:topic`: decode, validate against the topic's schemas, store every reading in
 * INGEST and answer 202 only once JetStream acknowledged all of them.
 */
export function ingestRoutes(deps: IngestDeps): Hono {
  const app = new Hono();
  app.post("/v1/ingest/:topic", async (c) => {
    const req = c.req.raw;
    const topic = c.req.param("topic");
    const route = deps.route(topic);
    if (!route) {
      const known = deps.topics();
      return reply(req, 404, {
        error: "unknown_topic",
        message: `Unknown topic ${JSON.stringify(topic)}; known topics: ${known.length ? known.join(", ") : "(none: no handler is loaded)"}`,
        topics: known,
      });
    }
    const mediaType = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (!Object.values(MEDIA_TYPES).includes(mediaType as never)) {
      return reply(req, 415, {
        error: "unsupported_media_type",
        message: `Content-Type ${JSON.stringify(mediaType || "(none)")} is not supported; use application/cbor, application/cbor-seq or application/json`,
      });
    }
    let body: Uint8Array;
    try {
      body = await readBody(req, deps.bodyLimit, c.env);
    } catch (e) {
      if (e instanceof BodyTooLargeError) {
        // The rest of the body is never read: tell the client not to reuse this connection.
        return reply(req, 413, { error: "payload_too_large", message: e.message, limit: e.limit }, { connection: "close" });
      }
      throw e;
    }
    let readings: unknown[];
    let raw: Uint8Array[] | undefined;
    try {
      ({ readings, raw } = decodeBody(mediaType, body, deps.cborLimits));
    } catch (e) {
      if (e instanceof MalformedBodyError) {
        return reply(req, 400, { error: "malformed_body", message: e.message, ...(e.index !== undefined ? { index: e.index } : {}) });
      }
      throw e;
    }
    if (readings.length === 0) return reply(req, 400, { error: "no_readings", message: "The body holds no readings" });
    if (readings.length > deps.maxReadings) {
      return reply(req, 413, {
        error: "too_many_readings",
        message: `${readings.length} readings in one request; at most ${deps.maxReadings} are accepted`,
        limit: deps.maxReadings,
      });
    }
    if (route.schemaKeys.length) {
      let issues: ReadingIssue[];
      try {
        issues = await deps.validator.validate(route.schemaKeys, readings);
      } catch (e) {
        if (e instanceof ValidatorUnavailableError) return _unavailable(req, e.message);
        return reply(req, 500, { error: "schema_error", message: (e as Error).message });
      }
      if (issues.length) {
        const first = issues[0]!;
        return reply(req, 400, {
          error: "invalid_reading",
          message: `Reading ${first.index}${first.path ? `, field ${first.path}` : ""}: ${first.message}` +
            (issues.length > 1 ? ` (and ${issues.length - 1} more issues)` : "") + "; nothing was stored",
          index: first.index,
          path: first.path,
          issues: issues.slice(0, _MAX_LISTED_ISSUES),
        });
      }
    }
    const broker = deps.broker();
    if (!broker?.connected()) return _unavailable(req, "The message broker is unreachable; nothing was stored");
    const pressure = deps.pressure?.(topic);
    if (pressure) {
      return reply(req, pressure.status, { error: pressure.error, message: `${pressure.message}; nothing was stored` }, { "retry-after": String(pressure.retryAfterS) });
    }
    const ids = _messageIds(req, topic, readings, route.idField);
    const notBefore = _notBefore(req.headers.get("not-before"));
    if (notBefore instanceof Error) return reply(req, 400, { error: "invalid_not_before", message: notBefore.message });
    const delayed = notBefore !== undefined && notBefore > Date.now();
    const requestHigh = /^high$/i.test(req.headers.get("outpost-priority") ?? "");
    const results = await Promise.allSettled(
      readings.map((r, i) => {
        const opts: { msgID?: string; headers?: ReturnType<typeof natsHeaders>; timeout: number } = { timeout: 5_000 };
        const id = ids[i];
        if (id !== undefined) opts.msgID = id;
        // Priority lanes exist only where every handler of the topic serves them.
        const high = route.priority !== undefined && (requestHigh || _isHigh(r, route.priority.field));
        if (delayed || high) {
          opts.headers = natsHeaders();
          if (delayed) opts.headers.set(NOT_BEFORE_HEADER, String(notBefore));
          if (high) opts.headers.set(PRIORITY_HEADER, "high");
        }
        const subject = delayed ? delayedSubject(topic) : readingSubject(topic, high);
        return broker.js.publish(subject, raw?.[i] ?? encodeCbor(r), opts);
      }),
    );
    const stored: StoredReading[] = [];
    const failed: { index: number; message: string }[] = [];
    results.forEach((r, index) => {
      if (r.status === "fulfilled") stored.push(_stored(index, r.value));
      else failed.push({ index, message: (r.reason as Error).message });
    });
    if (failed.length) {
      deps.log.warn(`storing ${failed.length} of ${readings.length} readings on ${topic} failed: ${failed[0]!.message}`);
      const full = failed.some((f) => /maximum (bytes|messages)|insufficient|storage/i.test(f.message));
      return reply(req, full ? 507 : 503, {
        error: full ? "storage_full" : "broker_unavailable",
        message: `${failed.length} of ${readings.length} readings were not stored (${failed[0]!.message}); ` +
          "retry them (readings listed under stored were kept)",
        stored,
        failed,
      }, { "retry-after": full ? "30" : "2" });
    }
    return reply(req, 202, {
      topic,
      accepted: stored.length,
      ...(delayed ? { notBefore: new Date(notBefore).toISOString() } : {}),
      results: stored,
    });
  });
  return app;
}

const _MAX_DELAY_MS = 365 * 86_400_000;

/** `Not-Before`: an ISO 8601 or HTTP date, or epoch milliseconds. */
function _notBefore(h: string | null): number | undefined | Error {
  if (h === null || h.trim() === "") return undefined;
  const t = /^\d+$/.test(h.trim()) ? Number(h.trim()) : Date.parse(h);
  if (!Number.isFinite(t)) return new Error(`Not-Before ${JSON.stringify(h)} is not a date (ISO 8601, HTTP date, or epoch milliseconds)`);
  if (t - Date.now() > _MAX_DELAY_MS) return new Error("Not-Before is more than 365 days ahead");
  return t;
}

function _isHigh(reading: unknown, field: string | undefined): boolean {
  if (!field || !reading || typeof reading !== "object") return false;
  const v = (reading as Record<string, unknown>)[field];
  return v === true || v === "high" || (typeof v === "number" && v > 0);
}

function _unavailable(req: Request, message: string): Response {
  return reply(req, 503, { error: "broker_unavailable", message }, { "retry-after": "2" });
}

function _stored(index: number, ack: PubAck): StoredReading {
  return ack.duplicate ? { index, seq: ack.seq, duplicate: true } : { index, seq: ack.seq };
}

/** Nats-Msg-Id per reading: the Idempotency-Key header (suffixed by index in a batch), else the id field. */
function _messageIds(req: Request, topic: string, readings: unknown[], idField: string | undefined): (string | undefined)[] {
  const key = req.headers.get("idempotency-key");
  return readings.map((r, i) => {
    if (idField && r && typeof r === "object") {
      const v = (r as Record<string, unknown>)[idField];
      if (typeof v === "string" || typeof v === "number" || typeof v === "bigint") return `${topic}:${String(v)}`;
    }
    if (key) return readings.length === 1 ? `${topic}:${key}` : `${topic}:${key}:${i}`;
    return undefined;
  });
}
