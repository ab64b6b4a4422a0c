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

/**
 * The three stream configurations, sized from the file store limit so that together they never
 * exceed it (JetStream reserves each stream's max_bytes against the account).
 * @param maxFileStore the server's (or account's) JetStream file store limit in bytes
 */
export function streamConfigs(maxFileStore: number): (Partial<StreamConfig> & { name: string })[] {
  const part = (f: number) => Math.max(1024 * 1024, Math.floor(maxFileStore * f));
  return [
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
      // Store-and-forward towards a hub: keep a week, oldest out first when full.
      name: STREAMS.outbox,
      subjects: [streamFilter(SUBJECTS.outbox)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_bytes: part(0.25),
      max_age: 7 * _DAY_NS,
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
  ];
}

/**
 * Create the streams, or update them to the wanted config; idempotent.
 * @param jsm JetStream manager
 * @param maxFileStore file store limit the sizes derive from
 */
export async function ensureStreams(jsm: JetStreamManager, maxFileStore: number, log: Logger): Promise<void> {
  for (const cfg of streamConfigs(maxFileStore)) {
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
