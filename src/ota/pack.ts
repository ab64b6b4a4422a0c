import { lstat, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildHandler } from "../bundler/bundle.ts";
import { isHandlerFile } from "../bundler/handler_files.ts";
import { VERSION } from "../version.ts";
import { BundleFormatError, BundlePathError } from "./errors.ts";
import type { SigningKey } from "./keys.ts";
import { describeFiles, signBundle, type Manifest } from "./manifest.ts";

/** What `outpost pack` needs. */
export interface PackOptions {
  /** Directory of handler modules (like `--workers`). */
  dir: string;
  name: string;
  version: string;
  release: number;
  /** Lifetime of the manifest from now, in ms. */
  expiresInMs: number;
  keys: SigningKey[];
  runtimes?: string[];
  rollback?: boolean;
  now?: number;
}

/**
 * Build every handler of a directory into one self-contained module (esbuild, on the developer's
 * machine, so the device needs no bundler), then write a signed bundle of them.
 * @returns the bundle file's bytes and its manifest
 * @throws HandlerLoadError for a handler that does not build; BundlePathError for links
 */
export async function packDirectory(o: PackOptions): Promise<{ bytes: Uint8Array; manifest: Manifest }> {
  if (!o.keys.length) throw new BundleFormatError("Cannot pack: no signing key (--key)");
  const names = (await readdir(o.dir)).filter(isHandlerFile).sort();
  if (!names.length) throw new BundleFormatError(`Cannot pack ${o.dir}: no handler modules in it`);
  const out = await mkdtemp(join(tmpdir(), "outpost-pack-"));
  const files: { path: string; data: Uint8Array }[] = [];
  try {
    for (const n of names) {
      const file = join(o.dir, n);
      if ((await lstat(file)).isSymbolicLink()) throw new BundlePathError(`Cannot pack ${n}: links are not allowed in a bundle`);
      if (extname(n) === ".wasm") {
        files.push({ path: n, data: await readFile(file) });
        const json = file.replace(/\.wasm$/, ".json");
        files.push({ path: basename(json), data: await readFile(json) });
        continue;
      }
      const built = await buildHandler(file, out);
      files.push({ path: `${built.name}.mjs`, data: await readFile(fileURLToPath(built.schemaUrl)) });
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
  const now = o.now ?? Date.now();
  const manifest: Manifest = {
    name: o.name,
    version: o.version,
    release: o.release,
    created: now,
    expires: now + o.expiresInMs,
    target: { runtimes: o.runtimes ?? ["node", "deno", "bun"], outpost: VERSION },
    ...(o.rollback ? { rollback: true } : {}),
    files: await describeFiles(files),
  };
  return { bytes: await signBundle(manifest, files.map((f) => f.data), o.keys), manifest };
}

/**
 * Parse a duration: `30d`, `12h`, `15m`, `90s` or plain milliseconds.
 * @returns milliseconds
 */
export function parseDuration(text: string): number {
  const m = /^(\d+)\s*(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new BundleFormatError(`Invalid duration ${JSON.stringify(text)}: use 30d, 12h, 15m, 90s or milliseconds`);
  return Number(m[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? "ms") as "ms"];
}
