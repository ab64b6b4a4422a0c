/**
 * A handler's build, kept across restarts: `<build dir>/cache/<key>.json` names the built modules
 * and every file the build read, with its size and modification time and (outside node_modules) its
 * SHA-256. A later build of the same file by the same SDK whose inputs are all unchanged returns
 * the kept result without running esbuild (about two thirds of a worker's cold start).
 * @module
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { sha256Hex } from "../util/hash.ts";
import type { BuiltHandler } from "./bundle.ts";
import { writeWhole } from "./handler_files.ts";

interface _Input {
  path: string;
  size: number;
  mtimeMs: number;
  /** Content hash; packages (node_modules) are checked by size and time only. */
  sha256?: string;
}

/**
 * What a kept build's shape depends on beside the SDK: raised when the builder writes something
 * new (2: the guest's part and prelude, `mentionsWasm` on every build), so older entries build again.
 */
export const BUILD_LAYOUT = 2;

type _Urls = "handlerUrl" | "schemaUrl" | "guestUrl";
interface _Entry {
  v: 1;
  identity: string;
  file: string;
  inputs: _Input[];
  built: Omit<BuiltHandler, _Urls> & Record<_Urls, string>;
}

/** The file inputs of an esbuild metafile, absolute (virtual modules left out). */
export function fileInputs(metafileInputs: string[]): string[] {
  return metafileInputs.filter((i) => !i.includes(":")).map((i) => resolve(i));
}

async function _index(outDir: string, identity: string, file: string): Promise<string> {
  return join(outDir, "cache", `${(await sha256Hex(new TextEncoder().encode(`${identity}\u0000${resolve(file)}`))).slice(0, 24)}.json`);
}

async function _describe(path: string): Promise<_Input> {
  const s = await stat(path);
  const d: _Input = { path, size: s.size, mtimeMs: s.mtimeMs };
  if (!path.includes("/node_modules/")) d.sha256 = await sha256Hex(new Uint8Array(await readFile(path)));
  return d;
}

/**
 * The kept build of `file`, when every input is unchanged and the built modules are still there.
 * @param identity what else the build depends on (the SDK's version or hash)
 */
export async function cachedBuild(outDir: string, identity: string, file: string): Promise<BuiltHandler | undefined> {
  let e: _Entry;
  try {
    e = JSON.parse(await readFile(await _index(outDir, identity, file), "utf8")) as _Entry;
  } catch {
    return undefined;
  }
  if (e.v !== 1 || e.identity !== identity || e.file !== resolve(file)) return undefined;
  try {
    for (const i of e.inputs) {
      const s = await stat(i.path);
      if (s.size !== i.size) return undefined;
      if (i.sha256 === undefined ? s.mtimeMs !== i.mtimeMs : (await sha256Hex(new Uint8Array(await readFile(i.path)))) !== i.sha256) return undefined;
    }
    for (const u of [e.built.handlerUrl, e.built.schemaUrl, e.built.guestUrl]) await stat(fileURLToPath(u));
    if (e.built.guestSplit) for (const f of [e.built.guestSplit.part, e.built.guestSplit.prelude]) await stat(f);
  } catch {
    return undefined;
  }
  return { ...e.built, handlerUrl: new URL(e.built.handlerUrl), schemaUrl: new URL(e.built.schemaUrl), guestUrl: new URL(e.built.guestUrl) };
}

/** Keep a build for {@link cachedBuild}; a failure to write it only costs the next start a build. */
export async function keepBuild(outDir: string, identity: string, file: string, inputs: string[], built: BuiltHandler): Promise<void> {
  try {
    const entry: _Entry = {
      v: 1, identity, file: resolve(file),
      inputs: await Promise.all([...new Set([resolve(file), ...inputs])].map(_describe)),
      built: { ...built, handlerUrl: built.handlerUrl.href, schemaUrl: built.schemaUrl.href, guestUrl: built.guestUrl.href },
    };
    const path = await _index(outDir, identity, file);
    await mkdir(join(outDir, "cache"), { recursive: true });
    await writeWhole(path, JSON.stringify(entry));
  } catch { /* the next build runs esbuild again */ }
}
