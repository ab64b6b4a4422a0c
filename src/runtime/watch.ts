import { watch as fsWatch, type FSWatcher } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";

/** A file that settled after changing, or disappeared. */
export type WatchEvent = { type: "changed"; file: string } | { type: "removed"; file: string };

/** A running directory watch. */
export interface DirWatch {
  close(): void;
}

interface _Seen {
  size: number;
  mtimeMs: number;
}

/**
 * Watch a directory's files (not subdirectories). A file is reported once no change was signalled
 * for `quietMs` (editors' temp-file-and-rename writes and copies settle first); a removal once the
 * file stayed gone that long. fs.watch gives the prompt signal on every
 * runtime; a slow rescan (every `rescanMs`) catches what a file system fails to signal.
 * @param dir the directory
 * @param accept which file names matter
 * @param onEvent called per settled change
 */
export async function watchDir(
  dir: string,
  accept: (name: string) => boolean,
  onEvent: (e: WatchEvent) => void,
  opts: { quietMs?: number; rescanMs?: number } = {},
): Promise<DirWatch> {
  const quietMs = opts.quietMs ?? 50;
  // Files already there are the caller's to load; only later changes are reported.
  const seen = new Map<string, _Seen>();
  for (const n of (await readdir(dir).catch(() => [] as string[])).filter(accept)) {
    const s = await _stat(join(dir, n));
    if (s) seen.set(n, s);
  }
  const timers = new Map<string, ReturnType<typeof setTimeout>>();
  let closed = false;

  // Each signal for a file restarts its quiet period; when the period passes without one, the
  // file is looked at once. (A copy that stalls longer than quietMs can be seen half-written; it
  // then fails to build and is refused, and its completion is a change of its own.)
  const settle = (name: string) => {
    clearTimeout(timers.get(name));
    timers.set(name, setTimeout(async () => {
      timers.delete(name);
      if (closed) return;
      const now = await _stat(join(dir, name));
      if (timers.has(name)) return; // signalled again meanwhile
      const before = seen.get(name);
      if (now === null) {
        if (before) {
          seen.delete(name);
          onEvent({ type: "removed", file: join(dir, name) });
        }
        return;
      }
      if (before && _same(before, now)) return;
      seen.set(name, now);
      onEvent({ type: "changed", file: join(dir, name) });
    }, quietMs));
  };

  const scan = async () => {
    let names: string[];
    try {
      names = (await readdir(dir)).filter(accept);
    } catch {
      names = [];
    }
    for (const n of names) {
      const s = await _stat(join(dir, n));
      const before = seen.get(n);
      if (!timers.has(n) && (!before || !_same(before, s))) settle(n);
    }
    for (const n of seen.keys()) if (!names.includes(n) && !timers.has(n)) settle(n);
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = fsWatch(dir, (_event, name) => {
      if (closed) return;
      if (typeof name === "string" && name) {
        if (accept(name)) settle(name);
      } else void scan();
    });
    watcher.on("error", () => {});
  } catch {
    // No native watching here: the rescan alone does the job, just later.
  }
  const rescan = setInterval(() => void scan(), opts.rescanMs ?? 2_000);
  return {
    close: () => {
      closed = true;
      watcher?.close();
      clearInterval(rescan);
      for (const t of timers.values()) clearTimeout(t);
    },
  };
}

async function _stat(path: string): Promise<_Seen | null> {
  try {
    const s = await stat(path);
    return s.isFile() ? { size: s.size, mtimeMs: s.mtimeMs } : null;
  } catch {
    return null;
  }
}

function _same(a: _Seen | null | undefined, b: _Seen | null | undefined): boolean {
  if (!a || !b) return !a && !b;
  return a.size === b.size && a.mtimeMs === b.mtimeMs;
}
