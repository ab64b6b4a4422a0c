import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { VerifiedBundle } from "./verify.ts";

/** A release known to the device. Release 0 stands for the handler directory (`--workers`). */
export interface ReleaseRef {
  release: number;
  name: string;
  version: string;
  /** When it became active (ISO time). */
  activatedAt: string;
  /** Ids of the trusted keys that signed it. */
  signers: string[];
}

/** A release that was refused after verification, or rolled back. */
export interface FailedRelease {
  release: number;
  name: string;
  version: string;
  reason: string;
  at: string;
}

/** What `<data-dir>/bundles/state.json` holds: the atomic pointer to the active release. */
export interface BundleState {
  active: ReleaseRef | null;
  previous: ReleaseRef | null;
  /** Set while the active release is on probation (not yet committed). */
  probation: { release: number; since: string } | null;
  failed: FailedRelease[];
}

/** An empty state: handlers come from `--workers`. */
export const EMPTY_STATE: BundleState = { active: null, previous: null, probation: null, failed: [] };

/** On-disk layout of the bundle store below `<data-dir>/bundles`. */
export class ReleaseStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  /** The handler directory of a release. */
  handlersDir(release: number): string {
    return join(this.root, "releases", String(release), "handlers");
  }

  /** Read the pointer; a missing file means no release was ever activated. */
  async read(): Promise<BundleState> {
    try {
      const s = JSON.parse(await readFile(join(this.root, "state.json"), "utf8")) as BundleState;
      return { ...EMPTY_STATE, ...s };
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") return structuredClone(EMPTY_STATE);
      throw e;
    }
  }

  /**
   * Replace the pointer atomically: write a temp file, fsync it, rename it over `state.json`,
   * fsync the directory. A crash leaves either the old or the new state, never a mix.
   */
  async write(state: BundleState): Promise<void> {
    await mkdir(this.root, { recursive: true });
    const tmp = join(this.root, `.state.json.${crypto.randomUUID()}`);
    await _writeSynced(tmp, new TextEncoder().encode(JSON.stringify(state, null, 2)));
    await rename(tmp, join(this.root, "state.json"));
    await _syncDir(this.root);
  }

  /**
   * Write a verified bundle to `releases/<release>/` through a staging directory: every file is
   * fsynced, then the directory is renamed into place.
   * @returns the release's handler directory
   */
  async stage(b: VerifiedBundle): Promise<string> {
    const releases = join(this.root, "releases");
    await mkdir(releases, { recursive: true });
    const staging = join(releases, `.staging-${b.manifest.release}-${crypto.randomUUID().slice(0, 8)}`);
    const dirs = new Set<string>();
    for (const f of b.files) {
      const path = join(staging, "handlers", f.path);
      await mkdir(dirname(path), { recursive: true });
      dirs.add(dirname(path));
      await _writeSynced(path, f.data);
    }
    await mkdir(join(staging, "handlers"), { recursive: true });
    await _writeSynced(join(staging, "manifest.cbor"), b.manifestBytes);
    for (const d of [...dirs, join(staging, "handlers"), staging]) await _syncDir(d);
    const final = join(releases, String(b.manifest.release));
    // A directory left by an earlier, interrupted attempt at the same release is never active.
    await rm(final, { recursive: true, force: true });
    await rename(staging, final);
    await _syncDir(releases);
    return join(final, "handlers");
  }

  /**
   * Remove staging leftovers, interrupted uploads and releases that are neither active nor previous.
   * @param keep release numbers to keep
   */
  async cleanup(keep: number[]): Promise<void> {
    const releases = join(this.root, "releases");
    for (const n of await readdir(releases).catch(() => [] as string[])) {
      if (!keep.includes(Number(n)) || n.startsWith(".")) await rm(join(releases, n), { recursive: true, force: true });
    }
    await rm(join(this.root, "incoming"), { recursive: true, force: true });
    for (const n of await readdir(this.root).catch(() => [] as string[])) {
      if (n.startsWith(".state.json.")) await rm(join(this.root, n), { force: true });
    }
  }
}

async function _writeSynced(path: string, data: Uint8Array): Promise<void> {
  const fh = await open(path, "wx", 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function _syncDir(path: string): Promise<void> {
  try {
    const fh = await open(path, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch { /* some platforms cannot fsync a directory; the rename is still atomic */ }
}
