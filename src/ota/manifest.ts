import { decodeCbor, encodeCbor, scanCbor } from "../codec/cbor.ts";
import { sha256Hex } from "../util/hash.ts";
import { BundleFormatError } from "./errors.ts";
import { sign, type SigningKey } from "./keys.ts";

/** The `format` of every bundle file this version writes and reads. */
export const BUNDLE_FORMAT = "outpost-bundle/1";

/** One file of a release, as the manifest describes it. */
export interface ManifestFile {
  /** Relative path inside the release (`/` separated, no `..`, not absolute). */
  path: string;
  /** Only plain files exist in a bundle; links and devices are refused. */
  type: "file";
  size: number;
  /** Lowercase hex SHA-256 of the content. */
  sha256: string;
}

/** What a signed bundle says about itself. */
export interface Manifest {
  name: string;
  version: string;
  /** Monotonically increasing release number; a device refuses one not above its active release. */
  release: number;
  /** Milliseconds since the epoch. */
  created: number;
  /** Milliseconds since the epoch; an expired manifest is refused (frozen or replayed metadata). */
  expires: number;
  /** Runtimes this release runs on, and the oldest Outpost it needs. */
  target: { runtimes: string[]; outpost: string };
  /** True for a release made to go back to older handlers (still with a higher release number). */
  rollback?: boolean;
  files: ManifestFile[];
}

/** A signature over the manifest's exact CBOR bytes. */
export interface BundleSignature {
  keyId: string;
  sig: Uint8Array;
}

/** A decoded bundle file: the manifest bytes (what is signed), signatures, file contents in manifest order. */
export interface BundleContainer {
  manifestBytes: Uint8Array;
  signatures: BundleSignature[];
  files: Uint8Array[];
}

/**
 * Encode a manifest and its files into a bundle file, signed by each key.
 * @param manifest everything but the file list's sizes and hashes, which are computed here unless given
 * @param files contents in the order of `manifest.files`
 */
export async function signBundle(manifest: Manifest, files: Uint8Array[], keys: SigningKey[]): Promise<Uint8Array> {
  const manifestBytes = encodeCbor(manifest);
  const signatures = [];
  for (const k of keys) signatures.push({ keyId: k.id, sig: await sign(k, manifestBytes) });
  return encodeCbor({ format: BUNDLE_FORMAT, manifest: manifestBytes, signatures, files });
}

/**
 * Describe files for a manifest.
 * @param entries path and content of each file
 */
export async function describeFiles(entries: { path: string; data: Uint8Array }[]): Promise<ManifestFile[]> {
  const out: ManifestFile[] = [];
  for (const e of entries) out.push({ path: e.path, type: "file", size: e.data.length, sha256: await sha256Hex(e.data) });
  return out;
}

/**
 * Split a bundle file into its parts, checking the CBOR before decoding it.
 * @throws BundleFormatError
 */
export function decodeContainer(bytes: Uint8Array): BundleContainer {
  let raw: unknown;
  try {
    scanCbor(bytes, false);
    raw = decodeCbor(bytes);
  } catch (e) {
    throw new BundleFormatError(`Cannot read bundle: not a CBOR bundle file (${(e as Error).message})`);
  }
  const o = raw as Record<string, unknown> | null;
  if (!o || typeof o !== "object" || o.format !== BUNDLE_FORMAT) {
    throw new BundleFormatError(`Cannot read bundle: format is not ${BUNDLE_FORMAT}`);
  }
  const sigs = o.signatures;
  const files = o.files;
  if (!(o.manifest instanceof Uint8Array) || !Array.isArray(sigs) || !Array.isArray(files) || !files.every((f) => f instanceof Uint8Array)) {
    throw new BundleFormatError("Cannot read bundle: it needs a manifest (bytes), signatures and files (bytes)");
  }
  const signatures: BundleSignature[] = [];
  for (const s of sigs as Record<string, unknown>[]) {
    if (s && typeof s.keyId === "string" && s.sig instanceof Uint8Array) signatures.push({ keyId: s.keyId, sig: s.sig });
  }
  return { manifestBytes: o.manifest, signatures, files: files as Uint8Array[] };
}

/**
 * Decode the manifest bytes and check their shape.
 * @returns the manifest, or the list of problems
 */
export function parseManifest(bytes: Uint8Array): { manifest: Manifest; problems: [] } | { manifest: undefined; problems: string[] } {
  let m: Record<string, unknown>;
  try {
    scanCbor(bytes, false);
    m = decodeCbor(bytes) as Record<string, unknown>;
  } catch (e) {
    return { manifest: undefined, problems: [`manifest is not CBOR: ${(e as Error).message}`] };
  }
  const p: string[] = [];
  if (!m || typeof m !== "object") return { manifest: undefined, problems: ["manifest is not a map"] };
  if (typeof m.name !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(m.name)) p.push("name must be 1-64 letters, digits, '.', '_' or '-'");
  if (typeof m.version !== "string" || !m.version || m.version.length > 64) p.push("version must be a non-empty string");
  if (!Number.isSafeInteger(m.release) || (m.release as number) < 1) p.push("release must be a positive integer");
  for (const k of ["created", "expires"]) if (!Number.isSafeInteger(m[k])) p.push(`${k} must be milliseconds since the epoch`);
  const t = m.target as Record<string, unknown> | undefined;
  if (!t || !Array.isArray(t.runtimes) || typeof t.outpost !== "string") p.push("target needs runtimes (a list) and outpost (a version)");
  if (!Array.isArray(m.files)) p.push("files must be a list");
  else {
    for (const [i, f] of (m.files as Record<string, unknown>[]).entries()) {
      if (!f || typeof f.path !== "string" || !Number.isSafeInteger(f.size) || typeof f.sha256 !== "string") {
        p.push(`files[${i}] needs path, size and sha256`);
      }
    }
  }
  return p.length ? { manifest: undefined, problems: p } : { manifest: m as unknown as Manifest, problems: [] };
}
