/**
 * The MQTT bridge: readings that sensors publish over MQTT reach `MQTT_IN` (nats-server's MQTT
 * listener, through the accounts of `server_config.ts`), and the host moves each one through the
 * same decode, validation and store path as `POST /v1/ingest/:topic`, into `INGEST`.
 *
 * MQTT 3.1.1 cannot answer 400: a reading that cannot be stored as sent (malformed, invalid,
 * unknown topic, too large) is dead-lettered with the reason, the issues and the raw payload
 * (handler `~mqtt`; `outpost dlq` shows it, replay sends it through the bridge again). A
 * refusal that passes (the broker busy or full, back-pressure) leaves it in `MQTT_IN` and is
 * retried. Each reading is stored with a message id from its `MQTT_IN` sequence, so a crash
 * between store and ack never stores it twice.
 * @module
 */
import { AckPolicy, DeliverPolicy, JetStreamApiError, RetentionPolicy, DiscardPolicy, StorageType, type Consumer, type JsMsg } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import type { Broker } from "../broker/connect.ts";
import { decodeBody, MalformedBodyError, MEDIA_TYPES, SenmlError } from "../ingest/decode.ts";
import type { StoreRequest, StoredReading, TopicRoute } from "../ingest/store.ts";
import type { CborLimits } from "../codec/cbor.ts";
import { deadLetter } from "../dlq/dead_letter.ts";
import { ProblemError } from "../http/problem.ts";
import { isTopic } from "../sdk/definition.ts";
import type { Logger } from "../util/log.ts";
import { MQTT_SUBJECTS, sensorOfToken } from "./server_config.ts";

/** The stream MQTT readings wait in until the bridge has stored them in INGEST. */
export const MQTT_STREAM = "MQTT_IN";
/** The DLQ's handler name for MQTT readings that could not be stored (`~`: no handler has it). */
export const MQTT_DLQ_HANDLER = "~mqtt";
const _DURABLE = "outpost-mqtt";

/** What the bridge needs from the host. */
export interface MqttBridgeDeps {
  broker: () => Broker;
  /** The topic prefix as a subject (`ingest`). */
  prefix: string;
  route: (topic: string) => TopicRoute | undefined;
  store: (req: StoreRequest) => Promise<StoredReading[]>;
  bodyLimit: number;
  maxReadings: number;
  cborLimits: CborLimits;
  log: Logger;
  /** Told what became of each MQTT message. */
  onOutcome?: ((outcome: "stored" | "dead_lettered" | "retried", topic: string) => void) | undefined;
}

/** `MQTT_IN`: work-queue retention (gone once stored in INGEST), a slice of the file store. */
export async function ensureMqttStream(broker: Broker, maxBytes: number, maxMsgSize: number): Promise<boolean> {
  const cfg = {
    name: MQTT_STREAM,
    subjects: [MQTT_SUBJECTS],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_bytes: maxBytes,
    max_msg_size: maxMsgSize,
    duplicate_window: nanos(120_000),
  };
  try {
    await broker.jsm.streams.info(MQTT_STREAM);
    await broker.jsm.streams.update(MQTT_STREAM, cfg);
    return false;
  } catch (e) {
    if (!(e instanceof JetStreamApiError)) throw e;
    await broker.jsm.streams.add(cfg);
    return true;
  }
}

/** The media type of an MQTT payload: SenML where the topic asks for it, JSON when it looks like JSON, else CBOR. */
export function mqttMediaType(payload: Uint8Array, senml: boolean): string {
  let i = 0;
  while (i < payload.length && (payload[i] === 0x20 || payload[i] === 0x09 || payload[i] === 0x0a || payload[i] === 0x0d)) i++;
  const json = payload[i] === 0x7b || payload[i] === 0x5b; // { or [
  if (senml) return json ? MEDIA_TYPES.senmlJson : MEDIA_TYPES.senmlCbor;
  return json ? MEDIA_TYPES.json : MEDIA_TYPES.cborSeq;
}

class _Refusal extends Error {
  constructor(readonly code: string, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
    this.name = code;
  }
}

export class MqttBridge {
  #deps: MqttBridgeDeps;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #stopConsume = () => {};
  /** Counts since start, by outcome. */
  readonly counts = { stored: 0, dead_lettered: 0, retried: 0 };

  constructor(deps: MqttBridgeDeps) {
    this.#deps = deps;
  }

  async start(): Promise<void> {
    const broker = this.#deps.broker();
    const cfg = {
      durable_name: _DURABLE,
      description: "outpost MQTT bridge: MQTT_IN → validation → INGEST",
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(30_000),
      max_deliver: -1,
      max_ack_pending: 1_024,
    };
    try {
      await broker.jsm.consumers.info(MQTT_STREAM, _DURABLE);
    } catch (e) {
      if (!(e instanceof JetStreamApiError)) throw e;
      await broker.jsm.consumers.add(MQTT_STREAM, cfg);
    }
    const consumer = await broker.js.consumers.get(MQTT_STREAM, _DURABLE);
    this.#loop = this.#run(consumer);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stopConsume();
    await this.#loop?.catch(() => {});
  }

  async #run(consumer: Consumer): Promise<void> {
    while (!this.#stopping) {
      try {
        // What arrived while the last group was being stored is the next group: batches grow with
        // the load, and a lone reading waits for nothing.
        const messages = await consumer.consume({ max_messages: 512 });
        this.#stopConsume = () => void messages.stop();
        const queue: JsMsg[] = [];
        let draining: Promise<void> | undefined;
        const drain = async () => {
          while (queue.length) await this.#batch(queue.splice(0, 256));
          draining = undefined;
        };
        for await (const m of messages) {
          queue.push(m);
          draining ??= drain();
        }
        await draining;
      } catch (e) {
        if (this.#stopping) break;
        this.#deps.log.warn(`MQTT bridge consumer failed: ${(e as Error).message}; retrying in 1 s`);
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  /**
   * A batch of messages, in order. Consecutive readings of one sensor and topic are stored together:
   * one validation and one round of publishes (in order on the wire), then every ack. A group
   * with a refused reading is taken apart, one message at a time, so only that one is
   * dead-lettered; a refusal that passes naks the whole group.
   */
  async #batch(msgs: JsMsg[]): Promise<void> {
    let group: { m: JsMsg; req: StoreRequest }[] = [];
    const flush = async () => {
      const g = group;
      group = [];
      if (!g.length) return;
      if (g.length === 1) return await this.#one(g[0]!.m, g[0]!.req);
      const first = g[0]!.req;
      const req: StoreRequest = {
        topic: first.topic, route: first.route, sensor: first.sensor,
        readings: g.flatMap((x) => x.req.readings),
        // A JSON reading has no bytes of its own (encoded at store): a hole the store fills.
        raw: g.flatMap((x) => x.req.raw ?? x.req.readings.map(() => undefined)) as Uint8Array[],
        keys: g.flatMap((x) => x.req.keys!),
      };
      try {
        await this.#deps.store(req);
      } catch (e) {
        if (e instanceof ProblemError && (e.status === 400 || e.status === 404 || e.status === 413)) {
          for (const x of g) await this.#one(x.m, x.req);
          return;
        }
        for (const x of g) this.#retry(x.m, x.req.topic, e);
        return;
      }
      for (const x of g) {
        x.m.ack();
        this.#count("stored", x.req.topic);
      }
    };
    for (const m of msgs) {
      const { sensor, topic } = this.#parse(m.subject);
      let req: StoreRequest;
      try {
        req = this.#request(m, topic, sensor);
      } catch (e) {
        await flush();
        if (e instanceof _Refusal) await this.#deadLetter(m, topic, sensor, e);
        else this.#retry(m, topic, e);
        continue;
      }
      const last = group[group.length - 1]?.req;
      if (last && (last.topic !== req.topic || last.sensor !== req.sensor || group.length >= 128)) await flush();
      group.push({ m, req });
    }
    await flush();
  }

  /** `mqtt.<sensor token>.<prefix…>.<topic…>` → sensor and topic. */
  #parse(subject: string): { sensor: string | undefined; topic: string } {
    const rest = subject.slice("mqtt.".length);
    const dot = rest.indexOf(".");
    const token = rest.slice(0, dot);
    const after = rest.slice(dot + 1);
    const topic = after.startsWith(`${this.#deps.prefix}.`) ? after.slice(this.#deps.prefix.length + 1) : "";
    return { sensor: sensorOfToken(token), topic };
  }

  async #one(m: JsMsg, req: StoreRequest): Promise<void> {
    try {
      await this.#deps.store(req);
      m.ack();
      this.#count("stored", req.topic);
    } catch (e) {
      if (e instanceof ProblemError && (e.status === 400 || e.status === 404 || e.status === 413)) {
        return await this.#deadLetter(m, req.topic, req.sensor, new _Refusal(e.code, e.message.replace(/; nothing was stored$/, ""), e.extra));
      }
      this.#retry(m, req.topic, e);
    }
  }

  /** Broker busy, store full, back-pressure: the reading waits in MQTT_IN and is tried again. */
  #retry(m: JsMsg, topic: string, e: unknown): void {
    const wait = e instanceof ProblemError ? Math.max(1, Number(e.headers["retry-after"] ?? 2)) * 1_000 : 2_000;
    if (m.info.deliveryCount === 1 || m.info.deliveryCount % 30 === 0) {
      this.#deps.log.warn(`MQTT reading ${m.seq} on ${topic || m.subject} not stored yet (${(e as Error).message}); retrying in ${wait} ms`);
    }
    m.nak(wait);
    this.#count("retried", topic);
  }

  #request(m: JsMsg, topic: string, sensor: string | undefined): StoreRequest {
    const d = this.#deps;
    if (!isTopic(topic)) throw new _Refusal("invalid_topic", `MQTT subject ${m.subject} names no topic below the prefix ${d.prefix}`);
    const route = d.route(topic);
    if (!route) throw new _Refusal("unknown_topic", `Unknown topic ${JSON.stringify(topic)}: no handler consumes it`);
    if (m.data.length > d.bodyLimit) throw new _Refusal("payload_too_large", `${m.data.length} bytes; at most ${d.bodyLimit} are accepted`);
    const type = mqttMediaType(m.data, route.senml !== undefined);
    let decoded;
    try {
      decoded = decodeBody(type, m.data, d.cborLimits, { senml: route.senml });
    } catch (e) {
      if (e instanceof MalformedBodyError) throw new _Refusal("malformed_body", e.message);
      if (e instanceof SenmlError) throw new _Refusal("invalid_senml", e.message, { index: e.index, label: e.label });
      throw e;
    }
    if (!decoded.readings.length) throw new _Refusal("no_readings", "The payload holds no readings");
    if (decoded.readings.length > d.maxReadings) throw new _Refusal("too_many_readings", `${decoded.readings.length} readings; at most ${d.maxReadings} are accepted`);
    const keys = decoded.readings.length === 1 ? [`mqtt:${m.seq}`] : decoded.readings.map((_, i) => `mqtt:${m.seq}:${i}`);
    return { topic, route, readings: decoded.readings, raw: decoded.raw, keys, sensor };
  }

  async #deadLetter(m: JsMsg, topic: string, sensor: string | undefined, r: _Refusal): Promise<void> {
    const now = new Date();
    try {
      await deadLetter(this.#deps.broker().js, m, {
        handler: MQTT_DLQ_HANDLER,
        version: "mqtt",
        subject: m.subject,
        seq: m.seq,
        attempts: 1,
        error: { name: r.code, message: r.message, ...(r.extra.issues ? { issues: r.extra.issues } : {}) } as never,
        firstError: undefined,
        storedAt: new Date(Number(m.info.timestampNanos / 1_000_000)),
        failedAt: now,
        payload: m.data,
        sensor,
      });
    } catch (e) {
      this.#deps.log.warn(`cannot dead-letter MQTT reading ${m.seq}: ${(e as Error).message}; retrying`);
      m.nak(2_000);
      return;
    }
    m.ack();
    this.#deps.log.warn(`MQTT reading on ${topic || m.subject}${sensor ? ` from ${sensor}` : ""} dead-lettered (${r.code}): ${r.message}`);
    this.#count("dead_lettered", topic);
  }

  #count(outcome: "stored" | "dead_lettered" | "retried", topic: string): void {
    this.counts[outcome]++;
    this.#deps.onOutcome?.(outcome, topic);
  }
}
