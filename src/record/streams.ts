/**
 * Recordings: a topic's readings kept, besides INGEST, in a limits-retention stream of their own
 * (`RECORD_<topic>`, subject `record.<topic>`), bounded by bytes and age, so that they can be
 * exported (`outpost record export`) and replayed against a candidate handler (`outpost replay`).
 * One stream per topic, so each topic's bounds are its own. Recordings share one slice of the
 * JetStream file store (1/16, beside INGEST's 1/2, OUTBOX's 1/4, DLQ's 1/8 and MQTT_IN's 1/16):
 * JetStream reserves each stream's `max_bytes`, so a recording past the slice is refused at load.
 * @module
 */
import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { recordSubject, SENSOR_HEADER } from "../broker/subjects.ts";

/** What a recording keeps at most. */
export interface RecordBounds {
  maxBytes: number;
  maxAgeMs: number;
}

/** Defaults of a definition's `record: true` and of `--record TOPIC`. */
export const RECORD_DEFAULTS: RecordBounds = { maxBytes: 16 * 1024 * 1024, maxAgeMs: 7 * 86_400_000 };
/** The share of the file store all recordings together may take. */
export const RECORD_SHARE = 1 / 16;

/** The stream that records `topic` (dots become underscores: stream names have none). */
export function recordStream(topic: string): string {
  return `RECORD_${topic.replace(/\./g, "_")}`;
}

/**
 * Create or update the recording of a topic.
 * @param budget the whole slice of the file store for recordings: one recording is capped at it
 * @returns the bounds in force (maxBytes capped at the budget)
 */
export async function ensureRecordStream(jsm: JetStreamManager, topic: string, bounds: RecordBounds, budget: number, replicas = 1): Promise<RecordBounds> {
  const name = recordStream(topic);
  const maxBytes = Math.min(bounds.maxBytes, Math.max(1024 * 1024, Math.floor(budget)));
  let subjects = [recordSubject(topic)];
  let exists = false;
  try {
    const info = await jsm.streams.info(name);
    exists = true;
    // Topics a.b and a_b share a stream name: the stream then keeps both subjects.
    subjects = [...new Set([...(info.config.subjects ?? []), ...subjects])];
  } catch (e) {
    if (!(e instanceof JetStreamApiError)) throw e;
  }
  const cfg = {
    name,
    subjects,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_bytes: maxBytes,
    max_age: nanos(bounds.maxAgeMs),
    duplicate_window: nanos(Math.min(120_000, bounds.maxAgeMs)),
    description: `outpost recording of topic ${topic}`,
    num_replicas: replicas,
  };
  try {
    if (exists) await jsm.streams.update(name, cfg);
    else await jsm.streams.add(cfg);
  } catch (e) {
    throw new Error(`Cannot record topic ${topic} (${maxBytes} bytes, ${bounds.maxAgeMs} ms): ${(e as Error).message}; ` +
      `recordings share ${Math.round(RECORD_SHARE * 100 * 100) / 100} % of --max-file-store (JetStream reserves each one's maxBytes)`);
  }
  return { maxBytes, maxAgeMs: bounds.maxAgeMs };
}

/** One recorded reading: its stored bytes, when it was stored, and who sent it. */
export interface RecordedReading {
  seq: number;
  time: Date;
  data: Uint8Array;
  sensor: string | undefined;
}

/**
 * Read a topic's recording, oldest first.
 * @param since only readings stored at or after this time
 * @param limit at most this many
 * @returns undefined when the topic is not recorded
 */
export async function readRecording(js: JetStreamClient, jsm: JetStreamManager, topic: string, since: Date | undefined, limit: number): Promise<RecordedReading[] | undefined> {
  const name = recordStream(topic);
  let total: number;
  try {
    total = (await jsm.streams.info(name)).state.messages;
  } catch (e) {
    if (e instanceof JetStreamApiError) return undefined;
    throw e;
  }
  const out: RecordedReading[] = [];
  if (total === 0 || limit <= 0) return out;
  // (No subject filter: nats-server 2.9 has none for ordered consumers; a shared stream is filtered below.)
  const consumer = await js.consumers.get(name, since ? { opt_start_time: since.toISOString() } : {});
  const subject = recordSubject(topic);
  try {
    // Bounded: at most `limit` messages, and no more than the stream held when asked.
    while (out.length < limit) {
      const m = await consumer.next({ expires: 1_000 });
      if (!m) break;
      if (m.subject === subject) out.push({ seq: m.seq, time: new Date(Number(m.info.timestampNanos / 1_000_000)), data: m.data, sensor: m.headers?.get(SENSOR_HEADER) || undefined });
      if (m.info.pending === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
  return out;
}
