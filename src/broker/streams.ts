import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { Logger } from "../util/log.ts";
import { streamFilter, SUBJECTS } from "./subjects.ts";

/** Names of the streams Outpost owns. */
export const STREAMS = { ingest: "INGEST", outbox: "OUTBOX", dlq: "DLQ" } as const;

/** Subject prefixes of those streams (spelled in subjects.ts). */
export { SUBJECTS } from "./subjects.ts";

const _DAY_NS = 86_400 * 1e9;

/** How long and how much OUTBOX keeps for a hub (`--outbox-max-age`, `--outbox-max-bytes`, `--outbox-max-msgs`). */
export interface StreamOptions {
  /** Copies of each stream on a clustered JetStream (`--replicas`, 1, 3 or 5); default 1. */
  replicas?: number | undefined;
  outboxMaxAgeMs?: number | undefined;
  /** Default: a quarter of the file store. */
  outboxMaxBytes?: number | undefined;
  /** Default: no count limit. */
  outboxMaxMsgs?: number | undefined;
}

/** OUTBOX keeps results this long by default: the longest outage it is sized for. */
export const OUTBOX_MAX_AGE_MS = 7 * 86_400_000;

/**
 * The three stream configurations, sized from the file store limit so that together they never
 * exceed it (JetStream reserves each stream's max_bytes against the account).
 * @param maxFileStore the server's (or account's) JetStream file store limit in bytes
 */
export function streamConfigs(maxFileStore: number, so: StreamOptions = {}): (Partial<StreamConfig> & { name: string })[] {
  const part = (f: number) => Math.max(1024 * 1024, Math.floor(maxFileStore * f));
  const num_replicas = so.replicas ?? 1;
  return ([
    {
      // Interest retention: a reading leaves disk once every handler consuming it has acked;
      // discard-new: when full, ingest is refused instead of evicting unprocessed readings.
      name: STREAMS.ingest,
      subjects: [streamFilter(SUBJECTS.ingest)],
      storage: StorageType.File,
      retention: RetentionPolicy.Interest,
      discard: DiscardPolicy.New,
      max_bytes: part(0.5),
      duplicate_window: 120 * 1e9,
    },
    {
      // Store-and-forward towards a hub: limits retention (a hub sources it; a work queue sourced
      // across a leafnode loses messages when the link drops), a week by default, oldest out first.
      name: STREAMS.outbox,
      subjects: [streamFilter(SUBJECTS.outbox)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_bytes: Math.min(so.outboxMaxBytes ?? part(0.25), part(0.25)),
      max_msgs: so.outboxMaxMsgs ?? -1,
      max_age: (so.outboxMaxAgeMs ?? OUTBOX_MAX_AGE_MS) * 1e6,
    },
    {
      // Dead letters are never evicted silently: when full, the message stays in INGEST instead.
      name: STREAMS.dlq,
      subjects: [streamFilter(SUBJECTS.dlq)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      max_bytes: part(0.125),
      max_age: 30 * _DAY_NS,
    },
  ] as (Partial<StreamConfig> & { name: string })[]).map((c) => ({ ...c, num_replicas }));
}

/**
 * Create the streams, or update them to the wanted config; idempotent.
 * @param jsm JetStream manager
 * @param maxFileStore file store limit the sizes derive from
 */
export async function ensureStreams(jsm: JetStreamManager, maxFileStore: number, log: Logger, so: StreamOptions = {}): Promise<void> {
  for (const cfg of streamConfigs(maxFileStore, so)) {
    const name = cfg.name;
    let existing: StreamConfig | undefined;
    try {
      existing = (await jsm.streams.info(name)).config;
    } catch (e) {
      if (!(e instanceof JetStreamApiError) || e.code !== JetStreamApiCodes.StreamNotFound) throw e;
    }
    if (!existing) {
      await jsm.streams.add(cfg);
      log.info(`created stream ${name} (${cfg.subjects?.join(", ")})`);
      continue;
    }
    if (existing.retention !== cfg.retention || existing.storage !== cfg.storage) {
      log.warn(
        `stream ${name} exists with retention ${existing.retention}/${existing.storage}; ` +
          `outpost wants ${cfg.retention}/${cfg.storage}, which cannot be changed in place: keeping it`,
      );
    }
    const { retention: _r, storage: _s, ...update } = cfg;
    await jsm.streams.update(name, { ...existing, ...update });
  }
}
