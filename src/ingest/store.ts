import { headers as natsHeaders } from "@nats-io/nats-core";
import type { PubAck } from "@nats-io/jetstream";
import type { Broker } from "../broker/connect.ts";
import type { BrokerState } from "../broker/health.ts";
import { delayedSubject, NOT_BEFORE_HEADER, PRIORITY_HEADER, readingSubject, recordSubject, SENSOR_HEADER } from "../broker/subjects.ts";
import { encodeCbor } from "../codec/cbor.ts";
import { formatTraceparent, TRACEPARENT_HEADER, TRACESTATE_HEADER, type TraceContext } from "../util/trace.ts";
import type { Pressure } from "../dispatch/backpressure.ts";
import { ProblemError } from "../http/problem.ts";
import type { ReadingIssue } from "../sandbox/protocol.ts";
import { ValidatorUnavailableError, type Validator } from "../schemas/validator.ts";
import type { Logger } from "../util/log.ts";

/** Where a topic's readings go and what they must satisfy. */
export interface TopicRoute {
  /** Keys of the schemas in the schema isolate (one per consuming handler that has a schema). */
  schemaKeys: string[];
  /** Field that gives each reading of a batch its idempotency key. */
  idField: string | undefined;
  /** The topic is recorded: each reading is also kept under `record.<topic>`. */
  record?: boolean | undefined;
  /** How a SenML body becomes readings: one per resolved record, or the pack as one. */
  senml?: "records" | "pack" | undefined;
  /** Set when every handler of the topic serves a high-priority lane; `field` marks a reading high. */
  priority: { field: string | undefined } | undefined;
}

/** What storing needs from the host. */
export interface StoreDeps {
  broker: () => Broker | undefined;
  validator: Validator;
  /** Back-pressure: a refusal for the topic, or undefined to accept. */
  pressure?: ((topic: string) => Pressure | undefined) | undefined;
  /** The budget of delayed readings: a refusal for `count` more, or undefined to accept (and count) them. */
  delayedPressure?: ((count: number) => Pressure | undefined) | undefined;
  /** What the last probe of the broker found. */
  health?: (() => BrokerState) | undefined;
  log: Logger;
}

/** Readings to store under one topic, from a request or from `ctx.emit`. */
export interface StoreRequest {
  topic: string;
  route: TopicRoute;
  readings: unknown[];
  /** CBOR bytes per reading when they arrived as CBOR (stored unchanged). */
  raw?: Uint8Array[] | undefined;
  /** The `Idempotency-Key` (suffixed by index in a batch); the route's `idField` takes precedence. */
  key?: string | null | undefined;
  /** An idempotency key per reading instead (the MQTT bridge's, from each message's sequence). */
  keys?: readonly string[] | undefined;
  /** Epoch ms before which the readings must not be handled. */
  notBefore?: number | undefined;
  /** The request asked for the high-priority lane (`Outpost-Priority: high`). */
  high?: boolean | undefined;
  /** The authenticated sensor that posted them: stored as a header, and the scope of their ids. */
  sensor?: string | undefined;
  /** The span that stores them (W3C trace context): stored as `traceparent`/`tracestate` headers. */
  trace?: TraceContext | undefined;
}

/** Per reading in a 202 answer. */
export interface StoredReading {
  index: number;
  seq: number;
  duplicate?: true;
}

const _MAX_LISTED_ISSUES = 100;
const _MAX_KEY = 128;
/** An idempotency key: 1 to 128 printable ASCII characters (it travels as a NATS header). */
export const IDEMPOTENCY_KEY = new RegExp(`^[\\x20-\\x7e]{1,${_MAX_KEY}}$`);
export const IDEMPOTENCY_KEY_RULE = `1 to ${_MAX_KEY} printable ASCII characters (space included)`;
// What the headers of a stored reading can take of the broker's max_payload (NATS/1.0 line,
// Nats-Msg-Id without its value, priority, not-before and sensor headers, and their separators).
const _HEADER_ROOM = 384;

/**
 * THE path that stores readings, for ingest and `ctx.emit` alike: the topic's schemas, the
 * broker's health and back-pressure, message ids, sizes against the broker's max payload, the
 * delayed budget, the priority lane, then one publish per reading, answered once JetStream
 * acknowledged all of them.
 * @returns what was stored, in order
 * @throws ProblemError for every refusal (ingest answers it, `ctx.emit` throws it at the handler)
 */
export async function storeReadings(deps: StoreDeps, req: StoreRequest): Promise<StoredReading[]> {
  const { topic, route, readings } = req;
  if (route.schemaKeys.length) await _validate(deps.validator, route.schemaKeys, readings);
  // The requests of one turn of the event loop publish together, so their publishes leave in one
  // socket write (nats.js flushes once per microtask checkpoint; requests arrive one macrotask each).
  // Everything from here to the publishes is synchronous.
  await sameTurn();
  const broker = deps.broker();
  if (!broker?.connected()) throw _unavailable("The message broker is unreachable; nothing was stored");
  const health = deps.health?.();
  if (health && !health.ok) {
    // Known before anything is sent: a definite "nothing was stored", not a 5 s wait for a maybe.
    const full = health.trouble === "disk_full";
    throw new ProblemError(full ? 507 : 503, full ? "storage_full" : "broker_unavailable", `${health.message}; nothing was stored`, {}, {
      "retry-after": full ? "30" : "2",
    });
  }
  const pressure = deps.pressure?.(topic);
  if (pressure) throw _refused(pressure);
  // Ids are scoped by the sensor: one sensor cannot pre-claim another's Idempotency-Key or id field.
  const ids = _messageIds(req.key ?? null, req.keys, req.sensor ? `${req.sensor}:${topic}` : topic, readings, route.idField);
  const delayed = req.notBefore !== undefined && req.notBefore > Date.now();
  // Everything is encoded and sized before the first publish: a request is stored whole or not at all.
  const maxPayload = broker.nc.info?.max_payload ?? 1024 * 1024;
  const payloads = readings.map((r, i) => {
    const bytes = req.raw?.[i] ?? encodeCbor(r);
    const limit = maxPayload - _HEADER_ROOM - (ids[i]?.length ?? 0);
    if (bytes.byteLength > limit) {
      throw new ProblemError(413, "reading_too_large",
        `Reading ${i} is ${bytes.byteLength} bytes; the broker takes at most ${limit} bytes per reading (max_payload ${maxPayload} less headers); nothing was stored`,
        { index: i, limit });
    }
    return bytes;
  });
  if (delayed) {
    const p = deps.delayedPressure?.(readings.length);
    if (p) throw _refused(p);
  }
  const results = await Promise.allSettled(readings.map((r, i) => {
    const opts: { msgID?: string; headers?: ReturnType<typeof natsHeaders>; timeout: number } = { timeout: 5_000 };
    const id = ids[i];
    if (id !== undefined) opts.msgID = id;
    // Priority lanes exist only where every handler of the topic serves them.
    const high = route.priority !== undefined && (req.high === true || _isHigh(r, route.priority.field));
    if (delayed || high || req.sensor || req.trace) {
      opts.headers = natsHeaders();
      if (delayed) opts.headers.set(NOT_BEFORE_HEADER, String(req.notBefore));
      if (high) opts.headers.set(PRIORITY_HEADER, "high");
      if (req.sensor) opts.headers.set(SENSOR_HEADER, req.sensor);
      if (req.trace) {
        opts.headers.set(TRACEPARENT_HEADER, formatTraceparent(req.trace));
        if (req.trace.tracestate) opts.headers.set(TRACESTATE_HEADER, req.trace.tracestate);
      }
    }
    // A recorded topic keeps the reading in its recording too (same id: a resend is no second copy).
    if (route.record) void broker.js.publish(recordSubject(topic), payloads[i]!, opts).catch((e: Error) => _recordFailed(deps.log, topic, e));
    return broker.js.publish(delayed ? delayedSubject(topic) : readingSubject(topic, high), payloads[i]!, opts);
  }));
  const stored: StoredReading[] = [];
  const failed: { index: number; message: string }[] = [];
  results.forEach((r, index) => {
    if (r.status === "fulfilled") stored.push(_stored(index, r.value));
    else failed.push({ index, message: (r.reason as Error).message });
  });
  if (failed.length) throw _failed(deps.log, topic, readings.length, stored, failed, ids.some((id) => id !== undefined));
  return stored;
}

let _turn: Promise<void> | undefined;
/** Resolves in the check phase of this loop turn; every caller in the same turn shares it. */
function sameTurn(): Promise<void> {
  return (_turn ??= new Promise<void>((resolve) => setImmediate(() => {
    _turn = undefined;
    resolve();
  })));
}

let _recordWarnedAt = 0;
/** A recording that could not take a reading: the reading is stored all the same (said at most once a minute). */
function _recordFailed(log: Logger, topic: string, e: Error): void {
  if (Date.now() - _recordWarnedAt < 60_000) return;
  _recordWarnedAt = Date.now();
  log.warn(`recording of ${topic} missed a reading: ${e.message}`);
}

async function _validate(validator: Validator, keys: string[], readings: unknown[]): Promise<void> {
  let issues: ReadingIssue[];
  try {
    issues = await validator.validate(keys, readings);
  } catch (e) {
    if (e instanceof ValidatorUnavailableError) throw _unavailable(e.message);
    throw new ProblemError(500, "schema_error", (e as Error).message);
  }
  const first = issues[0];
  if (!first) return;
  throw new ProblemError(400, "invalid_reading",
    `Reading ${first.index}${first.path ? `, field ${first.path}` : ""}: ${first.message}` +
      (issues.length > 1 ? ` (and ${issues.length - 1} more issues)` : "") + "; nothing was stored",
    { index: first.index, path: first.path, issues: issues.slice(0, _MAX_LISTED_ISSUES) });
}

function _isHigh(reading: unknown, field: string | undefined): boolean {
  if (!field || !reading || typeof reading !== "object") return false;
  const v = (reading as Record<string, unknown>)[field];
  return v === true || v === "high" || (typeof v === "number" && v > 0);
}

function _unavailable(message: string): ProblemError {
  return new ProblemError(503, "broker_unavailable", message, {}, { "retry-after": "2" });
}

function _refused(p: Pressure): ProblemError {
  return new ProblemError(p.status, p.error, `${p.message}; nothing was stored`, {}, { "retry-after": String(p.retryAfterS) });
}

function _stored(index: number, ack: PubAck): StoredReading {
  return ack.duplicate ? { index, seq: ack.seq, duplicate: true } : { index, seq: ack.seq };
}

/** Nats-Msg-Id per reading: the id field, else the Idempotency-Key (suffixed by index in a batch). */
function _messageIds(key: string | null, keys: readonly string[] | undefined, topic: string, readings: unknown[], idField: string | undefined): (string | undefined)[] {
  return readings.map((r, i) => {
    if (idField && r && typeof r === "object") {
      const v = (r as Record<string, unknown>)[idField];
      if (typeof v === "string" || typeof v === "number" || typeof v === "bigint") {
        if (!IDEMPOTENCY_KEY.test(String(v))) {
          throw new ProblemError(400, "invalid_idempotency_key", `Reading ${i}, field ${idField}: an id must be ${IDEMPOTENCY_KEY_RULE}; nothing was stored`);
        }
        return `${topic}:${String(v)}`;
      }
    }
    if (keys?.[i] !== undefined) return `${topic}:${keys[i]}`;
    if (key) return readings.length === 1 ? `${topic}:${key}` : `${topic}:${key}:${i}`;
    return undefined;
  });
}

/**
 * Some publishes failed. A full store is 507. A broker that did not answer in time may still have
 * stored them: say so, and how to resend safely, instead of a plain "not stored".
 */
function _failed(
  log: Logger,
  topic: string,
  total: number,
  stored: StoredReading[],
  failed: { index: number; message: string }[],
  keyed: boolean,
): ProblemError {
  log.warn(`storing ${failed.length} of ${total} readings on ${topic} failed: ${failed[0]!.message}`);
  if (failed.some((f) => /maximum (bytes|messages)|insufficient|storage/i.test(f.message))) {
    return new ProblemError(507, "storage_full",
      `${failed.length} of ${total} readings were not stored (${failed[0]!.message}); retry them (readings listed under stored were kept)`,
      { stored, failed }, { "retry-after": "30" });
  }
  if (!failed.some((f) => /timeout/i.test(f.message))) {
    return new ProblemError(503, "broker_unavailable",
      `${failed.length} of ${total} readings were not stored (${failed[0]!.message}); retry them (readings listed under stored were kept)`,
      { stored, failed }, { "retry-after": "2" });
  }
  return new ProblemError(503, "outcome_unknown",
    `${failed.length} of ${total} readings got no answer from the broker in time: they may or may not have been stored. ` +
      (keyed ? "Resend them with the same Idempotency-Key: the broker drops what it already has"
        : "Resend them with an Idempotency-Key header next time, so that a resend is never stored twice") +
      " (readings listed under stored were kept)",
    { stored, failed, unknown: failed.map((f) => f.index) }, { "retry-after": "2" });
}
