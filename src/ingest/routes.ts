import { Hono } from "hono";
import { isTopic } from "../sdk/definition.ts";
import type { CborLimits } from "../codec/cbor.ts";
import { BodyLimitError, BodyTimeoutError, readBody } from "../http/body.ts";
import { ProblemError } from "../http/problem.ts";
import { reply } from "../http/reply.ts";
import { decodeBody, MalformedBodyError, MEDIA_TYPES, SenmlError } from "./decode.ts";
import type { IngestGuard } from "../sensors/ingest_auth.ts";
import { clientCertificateName } from "../runtime/serve.ts";
import { childSpan, formatTraceparent, parseTraceparent, TRACEPARENT_HEADER, TRACESTATE_HEADER } from "../util/trace.ts";
import { IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_RULE, storeReadings, type StoreDeps, type TopicRoute } from "./store.ts";

export type { StoredReading, TopicRoute } from "./store.ts";

/** What the ingest routes need from the host. */
export interface IngestDeps extends StoreDeps {
  route: (topic: string) => TopicRoute | undefined;
  topics: () => string[];
  bodyLimit: number;
  maxReadings: number;
  cborLimits: CborLimits;
  /** Sensor authentication (the registry); absent or not required: ingest is open. */
  guard?: IngestGuard | undefined;
  /** Told how many readings of a topic were stored (metrics). */
  onStored?: ((topic: string, n: number) => void) | undefined;
}

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
      throw new ProblemError(400, "invalid_topic",
        `Topic ${JSON.stringify(t.length > 64 ? `${t.slice(0, 64)}…` : t)} is not a topic name: dot-separated words of letters, digits, _ and -, at most 200 characters`);
    }
    // Who is posting, before anything else is looked at or revealed (the known topics included).
    const caller = await deps.guard?.identify(req, topic, clientCertificateName(c.env));
    const key = req.headers.get("idempotency-key");
    if (key !== null && !IDEMPOTENCY_KEY.test(key)) {
      throw new ProblemError(400, "invalid_idempotency_key", `Idempotency-Key must be ${IDEMPOTENCY_KEY_RULE}; nothing was stored`);
    }
    const route = deps.route(topic);
    if (!route) {
      const known = deps.topics();
      throw new ProblemError(404, "unknown_topic",
        `Unknown topic ${JSON.stringify(topic)}; known topics: ${known.length ? known.join(", ") : "(none: no handler is loaded)"}`, { topics: known });
    }
    const mediaType = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (!Object.values(MEDIA_TYPES).includes(mediaType as never)) {
      throw new ProblemError(415, "unsupported_media_type",
        `Content-Type ${JSON.stringify(mediaType || "(none)")} is not supported; use ${Object.values(MEDIA_TYPES).slice(0, -1).join(", ")} or ${Object.values(MEDIA_TYPES).at(-1)}`);
    }
    let body: Uint8Array;
    try {
      body = await readBody(req, deps.bodyLimit, c.env);
    } catch (e) {
      // The rest of the body is never read: tell the client not to reuse this connection.
      if (e instanceof BodyLimitError) throw new ProblemError(413, "payload_too_large", e.message, { limit: e.limit }, { connection: "close" });
      if (e instanceof BodyTimeoutError) throw new ProblemError(408, "request_timeout", `${e.message}; nothing was stored`, {}, { connection: "close" });
      throw e;
    }
    if (caller?.signature) await deps.guard!.verify(req, body, caller.signature);
    let readings: unknown[];
    let raw: Uint8Array[] | undefined;
    try {
      ({ readings, raw } = decodeBody(mediaType, body, deps.cborLimits, { senml: route.senml }));
    } catch (e) {
      if (e instanceof MalformedBodyError) throw new ProblemError(400, "malformed_body", e.message, e.index !== undefined ? { index: e.index } : {});
      if (e instanceof SenmlError) {
        throw new ProblemError(400, "invalid_senml", `${e.message}; nothing was stored`, { index: e.index, ...(e.label !== undefined ? { label: e.label } : {}) });
      }
      throw e;
    }
    if (readings.length === 0) throw new ProblemError(400, "no_readings", "The body holds no readings");
    if (readings.length > deps.maxReadings) {
      throw new ProblemError(413, "too_many_readings", `${readings.length} readings in one request; at most ${deps.maxReadings} are accepted`, {
        limit: deps.maxReadings,
      });
    }
    const notBefore = _notBefore(req.headers.get("not-before"));
    if (notBefore instanceof Error) throw new ProblemError(400, "invalid_not_before", notBefore.message);
    const high = /^high$/i.test(req.headers.get("outpost-priority") ?? "");
    if (caller) deps.guard!.admit(caller, readings.length, { priority: high, notBefore: notBefore !== undefined });
    // The sensor's trace (traceparent), or a new one: ingest's span is stored with the readings.
    const trace = childSpan(parseTraceparent(req.headers.get(TRACEPARENT_HEADER), req.headers.get(TRACESTATE_HEADER)));
    const stored = await storeReadings(deps, { topic, route, readings, raw, key, notBefore, high, sensor: caller?.sensor.id, trace });
    deps.onStored?.(topic, stored.filter((r) => !r.duplicate).length);
    const delayed = notBefore !== undefined && notBefore > Date.now();
    return reply(req, 202, {
      topic,
      accepted: stored.length,
      ...(delayed ? { notBefore: new Date(notBefore).toISOString() } : {}),
      results: stored,
    }, { traceparent: formatTraceparent(trace) });
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
