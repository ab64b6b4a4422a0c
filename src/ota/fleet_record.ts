import type { JetStreamClient } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import * as v from "valibot";
import { sha256Hex } from "../util/hash.ts";
import { BundleHashError, BundleTooLargeError, FleetFetchError } from "./errors.ts";

/** Where the fleet's desired release lives on the hub, unless told otherwise. */
export const FLEET_DEFAULTS = { bucket: "outpost-bundles", kv: "outpost-fleet", key: "desired" } as const;

const _NAME = /^[-\w]+$/;

const _RECORD = v.object({
  name: v.string(),
  version: v.string(),
  release: v.pipe(v.number(), v.integer(), v.minValue(1)),
  bucket: v.pipe(v.string(), v.regex(_NAME)),
  object: v.pipe(v.string(), v.minLength(1), v.maxLength(255)),
  sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  size: v.pipe(v.number(), v.integer(), v.minValue(1)),
  publishedAt: v.string(),
  /** Activate as a canary first (the same parameters as `POST /v1/bundles?canary=`). */
  canary: v.optional(v.object({
    share: v.number(),
    readings: v.optional(v.number()),
    for: v.optional(v.string()),
    maxErrorRate: v.optional(v.number()),
    maxDeadLetters: v.optional(v.number()),
    maxP99Ratio: v.optional(v.number()),
  })),
});

/**
 * The KV value naming the release a fleet should run (JSON): the bundle's name, version and
 * release, where its file is (object store bucket and object name), and its size and SHA-256.
 * The record is not trusted: the bundle it names is verified like an upload.
 */
export type FleetRecord = v.InferOutput<typeof _RECORD>;

/**
 * Parse a KV value into a record.
 * @returns the record, or the problems as text
 */
export function parseFleetRecord(bytes: Uint8Array): { record: FleetRecord; problem?: undefined } | { record?: undefined; problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    return { problem: `not JSON: ${(e as Error).message}` };
  }
  const r = v.safeParse(_RECORD, json);
  if (r.success) return { record: r.output };
  return { problem: r.issues.map((i) => `${v.getDotPath(i) ?? "record"}: ${i.message}`).join("; ") };
}

/** The identity of a record: the same release with the same file is acted on once. */
export function recordKey(r: FleetRecord): string {
  return `${r.release}:${r.sha256}`;
}

/** `name version (release N)`, for messages. */
export function recordLabel(r: FleetRecord): string {
  return `${r.name} ${r.version} (release ${r.release})`;
}

/**
 * Fetch the bundle file a record names from the hub's object store, reading no more than the
 * record's size and the device's limit, then check its size and SHA-256 against the record.
 * @param js JetStream client bound to the hub's domain
 * @param maxBytes largest bundle the device accepts (`--max-bundle-size`)
 * @throws BundleTooLargeError or BundleHashError (final for this record); FleetFetchError (retry later)
 */
export async function fetchFleetBundle(js: JetStreamClient, r: FleetRecord, maxBytes: number): Promise<Uint8Array> {
  const label = `Cannot accept fleet bundle ${recordLabel(r)}`;
  if (r.size > maxBytes) throw new BundleTooLargeError(`${label}: the record says ${r.size} bytes, above the limit of ${maxBytes} bytes (--max-bundle-size)`);
  let os;
  let res;
  try {
    os = await new Objm(js).open(r.bucket);
    res = await os.get(r.object);
  } catch (e) {
    throw new FleetFetchError(`${label}: cannot reach object ${r.bucket}/${r.object} on the hub: ${(e as Error).message}`, { cause: e });
  }
  if (!res) throw new FleetFetchError(`${label}: object ${r.bucket}/${r.object} does not exist on the hub`);
  if (res.info.size !== r.size) {
    await res.data.cancel().catch(() => {});
    throw new BundleHashError(`${label}: object ${r.object} has ${res.info.size} bytes, the record says ${r.size}`);
  }
  const out = new Uint8Array(r.size);
  let n = 0;
  const reader = res.data.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.length > r.size) {
        await reader.cancel().catch(() => {});
        throw new BundleTooLargeError(`${label}: object ${r.object} holds more than the ${r.size} bytes the record says`);
      }
      out.set(value, n);
      n += value.length;
    }
  } catch (e) {
    if (e instanceof BundleTooLargeError) throw e;
    throw new FleetFetchError(`${label}: reading object ${r.object} failed: ${(e as Error).message}`, { cause: e });
  }
  const err = await res.error;
  if (err) throw new FleetFetchError(`${label}: reading object ${r.object} failed: ${err.message}`, { cause: err });
  if (n !== r.size) throw new FleetFetchError(`${label}: object ${r.object} ended after ${n} of ${r.size} bytes`);
  if ((await sha256Hex(out)) !== r.sha256) throw new BundleHashError(`${label}: object ${r.object} does not match the SHA-256 of the record`);
  return out;
}
