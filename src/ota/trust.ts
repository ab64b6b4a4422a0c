import { ConfigError } from "../errors.ts";
import { readPublicKey, verifySignature, type PublicKey } from "./keys.ts";
import type { BundleSignature } from "./manifest.ts";

/** The device's trust store: the public keys it accepts and how many must sign a release. */
export interface TrustStore {
  keys: PublicKey[];
  /** Distinct trusted keys whose signature must verify (k of n). */
  threshold: number;
}

/**
 * Load the keys of `--trust` (comma-separated files or inline `ed25519:` keys).
 * @param specs the key specs
 * @param threshold k of `--trust-threshold`
 * @throws ConfigError for a threshold above the number of keys
 */
export async function loadTrustStore(specs: string[], threshold = 1): Promise<TrustStore> {
  const keys: PublicKey[] = [];
  for (const s of specs.map((x) => x.trim()).filter(Boolean)) {
    const k = await readPublicKey(s);
    if (!keys.some((x) => x.id === k.id)) keys.push(k);
  }
  if (keys.length && threshold > keys.length) {
    throw new ConfigError(`--trust-threshold ${threshold} needs at least ${threshold} keys in --trust, got ${keys.length}`);
  }
  return { keys, threshold };
}

/**
 * Count distinct trusted keys with a valid signature over `data`.
 * @returns the ids of the keys that verified
 */
export async function verifiedSigners(store: TrustStore, sigs: BundleSignature[], data: Uint8Array): Promise<string[]> {
  const ok = new Set<string>();
  for (const s of sigs.slice(0, 16)) {
    const k = store.keys.find((x) => x.id === s.keyId);
    if (k && !ok.has(k.id) && (await verifySignature(k, s.sig, data))) ok.add(k.id);
  }
  return [...ok];
}
