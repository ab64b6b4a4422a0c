import { JetStreamApiCodes, JetStreamApiError, StorageType, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { Kvm, type KV } from "@nats-io/kv";
import { sha256Hex } from "../util/hash.ts";

const _EMPTY = new Uint8Array(0);

/**
 * Keys of handled readings, kept for `ttlMs` in a JetStream KV bucket (`outpost_dedupe_<handler>`,
 * usable with any KV client), so a reading sent again long after the stream's duplicate window is
 * recognised and not handled twice. Keys are the SHA-256 of the reading's dedupe key (a KV key is
 * a subject token).
 */
export class DedupeStore {
  readonly bucket: string;
  #jsm: JetStreamManager;
  #js: JetStreamClient;
  #ttlMs: number;
  #kv: KV | undefined;

  constructor(jsm: JetStreamManager, js: JetStreamClient, handler: string, ttlMs: number) {
    this.bucket = `outpost_dedupe_${handler.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    this.#jsm = jsm;
    this.#js = js;
    this.#ttlMs = ttlMs;
  }

  /** Create the bucket, or open it and bring its TTL to `ttlMs`. */
  async open(): Promise<void> {
    this.#kv = await new Kvm(this.#js).create(this.bucket, { ttl: this.#ttlMs, history: 1, storage: StorageType.File });
    const stream = `KV_${this.bucket}`;
    const existing = (await this.#jsm.streams.info(stream)).config;
    if (existing.max_age !== nanos(this.#ttlMs)) {
      await this.#jsm.streams.update(stream, { ...existing, max_age: nanos(this.#ttlMs), duplicate_window: nanos(Math.min(this.#ttlMs, 120_000)) });
    }
  }

  /** Whether `key` was handled within the TTL. */
  async seen(key: string): Promise<boolean> {
    try {
      return (await this.#kv!.get(await _key(key))) !== null;
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.NoMessageFound) return false;
      throw e;
    }
  }

  /** Remember `key` as handled. */
  async remember(key: string): Promise<void> {
    await this.#kv!.put(await _key(key), _EMPTY);
  }
}

async function _key(key: string): Promise<string> {
  return (await sha256Hex(new TextEncoder().encode(key))).slice(0, 40);
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
