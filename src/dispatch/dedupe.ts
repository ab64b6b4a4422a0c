import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { sha256Hex } from "../util/hash.ts";

/**
 * Keys of handled readings, kept for `ttlMs` in a JetStream KV bucket (`outpost_dedupe_<handler>`,
 * usable with any KV client), so a reading sent again long after the stream's duplicate window is
 * recognised and not handled twice.
 */
export class DedupeStore {
  readonly bucket: string;
  #jsm: JetStreamManager;
  #js: JetStreamClient;
  #ttlMs: number;

  constructor(jsm: JetStreamManager, js: JetStreamClient, handler: string, ttlMs: number) {
    this.bucket = `outpost_dedupe_${handler.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    this.#jsm = jsm;
    this.#js = js;
    this.#ttlMs = ttlMs;
  }

  get #stream(): string {
    return `KV_${this.bucket}`;
  }

  /** Create or update the bucket (the layout of a KV bucket: one value per key, TTL as max age). */
  async open(): Promise<void> {
    const cfg = {
      name: this.#stream,
      subjects: [`$KV.${this.bucket}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      max_msgs_per_subject: 1,
      max_age: nanos(this.#ttlMs),
      duplicate_window: nanos(Math.min(this.#ttlMs, 120_000)),
      allow_rollup_hdrs: true,
      deny_delete: true,
      allow_direct: true,
    };
    try {
      const existing = (await this.#jsm.streams.info(this.#stream)).config;
      await this.#jsm.streams.update(this.#stream, { ...existing, max_age: cfg.max_age, duplicate_window: cfg.duplicate_window });
    } catch (e) {
      if (!(e instanceof JetStreamApiError) || e.code !== 10059) throw e;
      await this.#jsm.streams.add(cfg);
    }
  }

  /** Whether `key` was handled within the TTL. */
  async seen(key: string): Promise<boolean> {
    try {
      return !!(await this.#jsm.streams.getMessage(this.#stream, { last_by_subj: await this.#subject(key) }));
    } catch (e) {
      if (e instanceof JetStreamApiError && (e.code === 10037 || e.status === 404)) return false;
      throw e;
    }
  }

  /** Remember `key` as handled. */
  async remember(key: string): Promise<void> {
    await this.#js.publish(await this.#subject(key), new Uint8Array(0));
  }

  async #subject(key: string): Promise<string> {
    return `$KV.${this.bucket}.${(await sha256Hex(new TextEncoder().encode(key))).slice(0, 40)}`;
  }
}

/**
 * The dedupe key of a reading: the values of the key fields (dotted paths) joined, or undefined
 * when a field is missing (such readings are never skipped).
 */
export function dedupeKey(reading: unknown, fields: readonly string[]): string | undefined {
  const parts: string[] = [];
  for (const f of fields) {
    let v: unknown = reading;
    for (const p of f.split(".")) v = v && typeof v === "object" ? (v as Record<string, unknown>)[p] : undefined;
    if (v === undefined || v === null) return undefined;
    parts.push(v instanceof Date ? v.toISOString() : typeof v === "object" ? JSON.stringify(v) : String(v));
  }
  return parts.join("\u0000");
}
