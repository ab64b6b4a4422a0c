import type { JetStreamClient } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { sha256Hex } from "../util/hash.ts";
import { BundleFormatError } from "./errors.ts";
import { parseFleetRecord, type FleetRecord } from "./fleet_record.ts";
import { decodeContainer, parseManifest } from "./manifest.ts";

/** Where {@link publishBundle} puts a bundle on the hub. */
export interface PublishTarget {
  /** Object store bucket for bundle files (created when missing). */
  bucket: string;
  /** KV bucket of the desired record (created when missing) and its key. */
  kv: string;
  key: string;
  /** Ask devices to activate it as a canary first. */
  canary?: FleetRecord["canary"] | undefined;
}

/** What {@link publishBundle} did. */
export interface PublishResult {
  record: FleetRecord;
  /** KV revision of the new record. */
  revision: number;
  /** The record it replaced, if any. */
  previous: FleetRecord | null;
}

/**
 * Put a bundle file into the hub's object store as `<name>-<release>.bundle`, then set the KV key
 * to a record naming it; every device watching the key fetches and verifies it. The bundle is
 * only read here (name, version, release), not verified: each device verifies it.
 * @param js JetStream client of the hub (or bound to the hub's domain)
 * @param bytes the bundle file
 * @throws BundleFormatError when the file is not a bundle
 */
export async function publishBundle(js: JetStreamClient, bytes: Uint8Array, t: PublishTarget): Promise<PublishResult> {
  const m = parseManifest(decodeContainer(bytes).manifestBytes).manifest;
  if (!m) throw new BundleFormatError("Cannot publish: the file is not a readable bundle (see outpost pack)");
  const object = `${m.name}-${m.release}.bundle`;
  const os = await new Objm(js).create(t.bucket);
  await os.putBlob({ name: object, description: `outpost bundle ${m.name} ${m.version} (release ${m.release})` }, bytes);
  const kv = await new Kvm(js).create(t.kv, { history: 10 });
  const old = await kv.get(t.key);
  const previous = old?.operation === "PUT" ? (parseFleetRecord(old.value).record ?? null) : null;
  const record: FleetRecord = {
    name: m.name, version: m.version, release: m.release, bucket: t.bucket, object,
    sha256: await sha256Hex(bytes), size: bytes.length, publishedAt: new Date().toISOString(),
    ...(t.canary ? { canary: t.canary } : {}),
  };
  const revision = await kv.put(t.key, JSON.stringify(record));
  return { record, revision, previous };
}
