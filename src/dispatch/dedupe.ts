import { JetStreamApiCodes, JetStreamApiError, StorageType, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { Kvm, type KV } from "@nats-io/kv";
import { sha256Hex } from "../util/hash.ts";

/**
 * Keys of handled readings, kept for `ttlMs` in a JetStream KV bucket (`outpost_dedupe_<handler>`,
 * usable with any KV client), so a reading sent again long after the stream's duplicate window is
 * recognised and not handled twice. Keys are the SHA-256 of the reading's dedupe key (a KV key is
 * a subject token). A key is claimed by the message handling it before it runs, and marked done
 * before that message is acked.
 */
export class DedupeStore {
  readonly bucket: string;
  #jsm: JetStreamManager;
  #js: JetStreamClient;
  #ttlMs: number;
  #kv: KV | undefined;

  #replicas: number;

  constructor(jsm: JetStreamManager, js: JetStreamClient, handler: string, ttlMs: number, replicas = 1) {
    this.#replicas = replicas;
    this.bucket = `outpost_dedupe_${handler.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    this.#jsm = jsm;
    this.#js = js;
    this.#ttlMs = ttlMs;
  }

  /** Create the bucket, or open it and bring its TTL to `ttlMs`. */
  async open(): Promise<void> {
    this.#kv = await new Kvm(this.#js).create(this.bucket, { ttl: this.#ttlMs, history: 1, storage: StorageType.File, replicas: this.#replicas });
    const stream = `KV_${this.bucket}`;
    const existing = (await this.#jsm.streams.info(stream)).config;
    if (existing.max_age !== nanos(this.#ttlMs)) {
      await this.#jsm.streams.update(stream, { ...existing, max_age: nanos(this.#ttlMs), duplicate_window: nanos(Math.min(this.#ttlMs, 120_000)) });
    }
  }

  /**
   * Claim `key` for the message `owner` (its INGEST sequence) before handling it, atomically, so
   * that two copies are never handled at once, by two slots or two hosts sharing the consumer.
   * @returns `mine` (handle it: a fresh claim, or this message's own from an earlier attempt),
   *   `done` (handled before: skip it) or `busy` (another copy is being handled: ask again later)
   */
  async claim(key: string, owner: string): Promise<"mine" | "done" | "busy"> {
    const k = await _key(key);
    for (let i = 0; i < 3; i++) {
      try {
        await this.#kv!.create(k, _enc({ owner, done: false }));
        return "mine";
      } catch (e) {
        if (!_exists(e)) throw e;
      }
      const e = await this.#kv!.get(k);
      if (!e || e.operation !== "PUT") continue; // released meanwhile: try to create again
      const v = _dec(e.value);
      if (v.done) return "done";
      return v.owner === owner ? "mine" : "busy";
    }
    return "busy";
  }

  /** `key` was handled by `owner`: later copies are skipped for the TTL. */
  async done(key: string, owner: string): Promise<void> {
    await this.#kv!.put(await _key(key), _enc({ owner, done: true }));
  }

  /** `owner` gave up on `key` (dead-lettered): another copy may take it. */
  async release(key: string, owner: string): Promise<void> {
    const k = await _key(key);
    const e = await this.#kv!.get(k);
    if (!e || e.operation !== "PUT" || e.length === 0) return;
    const v = _dec(e.value);
    if (v.owner === owner && !v.done) await this.#kv!.delete(k, { previousSeq: e.revision }).catch(() => {});
  }
}

/** A claim's value; an empty value (written by earlier versions) counts as done. */
function _dec(b: Uint8Array): { owner: string; done: boolean } {
  if (!b.length) return { owner: "", done: true };
  try {
    return JSON.parse(new TextDecoder().decode(b)) as { owner: string; done: boolean };
  } catch {
    return { owner: "", done: true };
  }
}

function _enc(v: { owner: string; done: boolean }): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}

/** The KV's create failed because the key exists (wrong last sequence). */
function _exists(e: unknown): boolean {
  return e instanceof JetStreamApiError && (e.code === JetStreamApiCodes.StreamWrongLastSequence || e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown || /wrong last sequence|key exists/i.test(e.message));
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
