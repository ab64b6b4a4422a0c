import { sha256Hex } from "../util/hash.ts";
import { VERSION } from "../version.ts";
import {
  BundleExpiredError,
  BundleFormatError,
  BundleHashError,
  BundlePathError,
  BundleRollbackError,
  BundleSignatureError,
  BundleTargetError,
  BundleTooLargeError,
} from "./errors.ts";
import { decodeContainer, parseManifest, type Manifest } from "./manifest.ts";
import { verifiedSigners, type TrustStore } from "./trust.ts";

/** What the device knows when it checks a bundle. */
export interface VerifyContext {
  trust: TrustStore;
  /** Release number of the active release (0 when none). */
  activeRelease: number;
  /** Releases that failed here before; they are never accepted again. */
  failedReleases: number[];
  /** Largest bundle file in bytes. */
  maxBytes: number;
  /** The runtime this host runs on (`node`, `deno`, `bun`). */
  runtime: string;
  now?: number;
}

/** A bundle that passed every check: the manifest and each file's content. */
export interface VerifiedBundle {
  manifest: Manifest;
  manifestBytes: Uint8Array;
  signers: string[];
  files: { path: string; data: Uint8Array }[];
}

/** At most this many files in one bundle. */
export const MAX_FILES = 1_000;

/**
 * Check a bundle file completely before anything is written: signatures against the trust
 * store, expiry, target, release number, paths, sizes and every hash.
 * @param bytes the whole bundle file
 * @throws a BundleError subclass naming the bundle and the reason
 */
export async function verifyBundle(bytes: Uint8Array, c: VerifyContext): Promise<VerifiedBundle> {
  if (bytes.length > c.maxBytes) throw new BundleTooLargeError(`Cannot accept bundle: ${bytes.length} bytes is above the limit of ${c.maxBytes} bytes`);
  const box = decodeContainer(bytes);
  // The label comes from the unverified manifest: only for the message.
  const peek = parseManifest(box.manifestBytes);
  const label = `Cannot activate bundle ${peek.manifest ? `${peek.manifest.name} ${peek.manifest.version} (release ${peek.manifest.release})` : "(unreadable manifest)"}`;
  if (!c.trust.keys.length) throw new BundleSignatureError(`${label}: this device trusts no keys (start outpost with --trust)`);
  const signers = await verifiedSigners(c.trust, box.signatures, box.manifestBytes);
  if (signers.length === 0) throw new BundleSignatureError(`${label}: signature does not match any trusted key`);
  if (signers.length < c.trust.threshold) {
    throw new BundleSignatureError(`${label}: ${signers.length} trusted signature(s), ${c.trust.threshold} required`);
  }
  if (!peek.manifest) throw new BundleFormatError(`${label}: invalid manifest: ${peek.problems.join("; ")}`);
  const m = peek.manifest;
  const now = c.now ?? Date.now();
  if (m.expires <= now) throw new BundleExpiredError(`${label}: manifest expired at ${new Date(m.expires).toISOString()}`);
  if (!m.target.runtimes.includes(c.runtime)) {
    throw new BundleTargetError(`${label}: built for ${m.target.runtimes.join(", ") || "no runtime"}, this host runs on ${c.runtime}`);
  }
  if (_cmpVersion(VERSION, m.target.outpost) < 0) throw new BundleTargetError(`${label}: needs outpost ${m.target.outpost}, this is ${VERSION}`);
  if (c.failedReleases.includes(m.release)) throw new BundleRollbackError(`${label}: release ${m.release} already failed on this device`);
  if (m.release <= c.activeRelease) {
    throw new BundleRollbackError(`${label}: release ${m.release} is not above the active release ${c.activeRelease} (a rollback needs a new, signed release)`);
  }
  if (m.files.length > MAX_FILES) throw new BundleTooLargeError(`${label}: ${m.files.length} files, at most ${MAX_FILES}`);
  const declared = m.files.reduce((a, f) => a + f.size, 0);
  if (declared > c.maxBytes) throw new BundleTooLargeError(`${label}: files declare ${declared} bytes, above the limit of ${c.maxBytes}`);
  const seen = new Set<string>();
  for (const f of m.files) {
    const problem = pathProblem(f.path, f.type);
    if (problem) throw new BundlePathError(`${label}: file ${JSON.stringify(f.path)} ${problem}`);
    if (seen.has(f.path.toLowerCase())) throw new BundlePathError(`${label}: file ${JSON.stringify(f.path)} appears twice`);
    seen.add(f.path.toLowerCase());
  }
  if (box.files.length !== m.files.length) throw new BundleHashError(`${label}: manifest lists ${m.files.length} files, bundle holds ${box.files.length}`);
  const files = [];
  for (const [i, f] of m.files.entries()) {
    const data = box.files[i]!;
    if (data.length !== f.size) throw new BundleHashError(`${label}: file ${f.path} has ${data.length} bytes, manifest says ${f.size}`);
    if ((await sha256Hex(data)) !== f.sha256) throw new BundleHashError(`${label}: file ${f.path} does not match its SHA-256 in the manifest`);
    files.push({ path: f.path, data });
  }
  return { manifest: m, manifestBytes: box.manifestBytes, signers, files };
}

/**
 * Why a manifest path could escape the release directory, or undefined when it is safe.
 * @param path the manifest's path
 * @param type the entry type (only `file` is allowed)
 */
export function pathProblem(path: string, type: string = "file"): string | undefined {
  if (type !== "file") return `is a ${type}: only plain files are allowed (no links)`;
  if (!path || path.length > 255) return "has an empty or too long path";
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "is an absolute path";
  if (path.includes("\\") || path.includes("\0")) return "contains a backslash or NUL";
  const parts = path.split("/");
  if (parts.some((p) => p === ".." )) return "escapes the release directory (..)";
  if (parts.some((p) => p === "" || p === ".")) return "has an empty or '.' segment";
  return undefined;
}

function _cmpVersion(a: string, b: string): number {
  const x = a.split(/[.-]/).map((n) => Number(n) || 0);
  const y = b.split(/[.-]/).map((n) => Number(n) || 0);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d) return d;
  }
  return 0;
}
