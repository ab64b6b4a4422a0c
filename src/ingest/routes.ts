import { Hono } from "hono";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { PubAck } from "@nats-io/jetstream";
import type { Broker } from "../broker/connect.ts";
import type { BrokerState } from "../broker/health.ts";
import { isTopic } from "../sdk/definition.ts";
import { encodeCbor, type CborLimits } from "../codec/cbor.ts";
import type { TopicRoute } from "../host/registry.ts";
import type { Pressure } from "../dispatch/backpressure.ts";
import { delayedSubject, NOT_BEFORE_HEADER, PRIORITY_HEADER, readingSubject } from "../broker/subjects.ts";
import type { Logger } from "../util/log.ts";
import type { ReadingIssue } from "../sandbox/protocol.ts";
import { ValidatorUnavailableError, type Validator } from "../schemas/validator.ts";
import { BodyTooLargeError, readBody } from "../http/body.ts";
import { decodeBody, MalformedBodyError, MEDIA_TYPES } from "./decode.ts";
import { reply } from "../http/reply.ts";

/** What the ingest routes need from the host. */
export interface IngestDeps {
  broker: () => Broker | undefined;
  route: (topic: string) => TopicRoute | undefined;
  topics: () => string[];
  validator: Validator;
  /** Back-pressure: a refusal for the topic, or undefined to accept. */
  pressure?: (topic: string) => Pressure | undefined;
  /** The budget of delayed readings: a refusal for `count` more, or undefined to accept (and count) them. */
  delayedPressure?: (count: number) => Pressure | undefined;
  /** What the last probe of the broker found. */
  health?: () => BrokerState;
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
    if (!isTopic(topic)) {
      const t: string = topic;
      return reply(req, 400, {
        error: "invalid_topic",
        message: `Topic ${JSON.stringify(t.length > 64 ? `${t.slice(0, 64)}…` : t)} is not a topic name: ` +
          "dot-separated words of letters, digits, _ and -, at most 200 characters",
      });
    }
    const key = req.headers.get("idempotency-key");
    if (key !== null && !_IDEMPOTENCY_KEY.test(key)) {
      return reply(req, 400, {
        error: "invalid_idempotency_key",
        message: `Idempotency-Key must be 1 to ${_MAX_KEY} printable ASCII characters (space included); nothing was stored`,
      });
    }
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
    const health = deps.health?.();
    if (health && !health.ok) {
      // Known before anything is sent: a definite "nothing was stored", not a 5 s wait for a maybe.
      const full = health.trouble === "disk_full";
      return reply(req, full ? 507 : 503, { error: full ? "storage_full" : "broker_unavailable", message: `${health.message}; nothing was stored` }, {
        "retry-after": full ? "30" : "2",
      });
    }
    const pressure = deps.pressure?.(topic);
    if (pressure) return _refused(req, pressure);
    const ids = _messageIds(key, topic, readings, route.idField);
    if (ids instanceof Error) return reply(req, 400, { error: "invalid_idempotency_key", message: `${ids.message}; nothing was stored` });
    const notBefore = _notBefore(req.headers.get("not-before"));
    if (notBefore instanceof Error) return reply(req, 400, { error: "invalid_not_before", message: notBefore.message });
    const delayed = notBefore !== undefined && notBefore > Date.now();
    const requestHigh = /^high$/i.test(req.headers.get("outpost-priority") ?? "");
    // Everything is encoded and sized before the first publish: a request is stored whole or not at all.
    const maxPayload = broker.nc.info?.max_payload ?? 1024 * 1024;
    const payloads: Uint8Array[] = [];
    for (let i = 0; i < readings.length; i++) {
      const bytes = raw?.[i] ?? encodeCbor(readings[i]);
      const limit = maxPayload - _HEADER_ROOM - (ids[i]?.length ?? 0);
      if (bytes.byteLength > limit) {
        return reply(req, 413, {
          error: "reading_too_large",
          message: `Reading ${i} is ${bytes.byteLength} bytes; the broker takes at most ${limit} bytes per reading (max_payload ${maxPayload} less headers); nothing was stored`,
          index: i,
          limit,
        });
      }
      payloads.push(bytes);
    }
    if (delayed) {
      const p = deps.delayedPressure?.(readings.length);
      if (p) return _refused(req, p);
    }
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
        return broker.js.publish(subject, payloads[i]!, opts);
      }),
    );
    const stored: StoredReading[] = [];
    const failed: { index: number; message: string }[] = [];
    results.forEach((r, index) => {
      if (r.status === "fulfilled") stored.push(_stored(index, r.value));
      else failed.push({ index, message: (r.reason as Error).message });
    });
    if (failed.length) return _failed(req, deps.log, topic, readings.length, stored, failed, ids.some((id) => id !== undefined));
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
const _MAX_KEY = 128;
const _IDEMPOTENCY_KEY = new RegExp(`^[\\x20-\\x7e]{1,${_MAX_KEY}}$`);
// What the headers of a stored reading can take of the broker's max_payload (NATS/1.0 line,
// Nats-Msg-Id without its value, priority and not-before headers, and their separators).
const _HEADER_ROOM = 256;

function _refused(req: Request, p: Pressure): Response {
  return reply(req, p.status, { error: p.error, message: `${p.message}; nothing was stored` }, { "retry-after": String(p.retryAfterS) });
}

/**
 * Some publishes failed. A full store is 507. A broker that did not answer in time may still have
 * stored them: say so, and how to resend safely, instead of a plain "not stored".
 */
function _failed(
  req: Request,
  log: Logger,
  topic: string,
  total: number,
  stored: StoredReading[],
  failed: { index: number; message: string }[],
  keyed: boolean,
): Response {
  log.warn(`storing ${failed.length} of ${total} readings on ${topic} failed: ${failed[0]!.message}`);
  const full = failed.some((f) => /maximum (bytes|messages)|insufficient|storage/i.test(f.message));
  if (full) {
    return reply(req, 507, {
      error: "storage_full",
      message: `${failed.length} of ${total} readings were not stored (${failed[0]!.message}); retry them (readings listed under stored were kept)`,
      stored,
      failed,
    }, { "retry-after": "30" });
  }
  const timedOut = failed.some((f) => /timeout/i.test(f.message));
  return reply(req, 503, {
    error: timedOut ? "outcome_unknown" : "broker_unavailable",
    message: timedOut
      ? `${failed.length} of ${total} readings got no answer from the broker in time: they may or may not have been stored. ` +
        (keyed ? "Resend them with the same Idempotency-Key: the broker drops what it already has"
          : "Resend them with an Idempotency-Key header next time, so that a resend is never stored twice") +
        " (readings listed under stored were kept)"
      : `${failed.length} of ${total} readings were not stored (${failed[0]!.message}); retry them (readings listed under stored were kept)`,
    stored,
    failed,
    ...(timedOut ? { unknown: failed.map((f) => f.index) } : {}),
  }, { "retry-after": "2" });
}

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
function _messageIds(key: string | null, topic: string, readings: unknown[], idField: string | undefined): (string | undefined)[] | Error {
  let bad: Error | undefined;
  const ids = readings.map((r, i) => {
    if (idField && r && typeof r === "object") {
      const v = (r as Record<string, unknown>)[idField];
      if (typeof v === "string" || typeof v === "number" || typeof v === "bigint") {
        // The id travels as a NATS header: no control characters, bounded length.
        if (!_IDEMPOTENCY_KEY.test(String(v))) bad ??= new Error(`Reading ${i}, field ${idField}: an id must be 1 to ${_MAX_KEY} printable ASCII characters (space included)`);
        return `${topic}:${String(v)}`;
      }
    }
    if (key) return readings.length === 1 ? `${topic}:${key}` : `${topic}:${key}:${i}`;
    return undefined;
  });
  return bad ?? ids;
}
