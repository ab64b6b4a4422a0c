import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { extname, join, resolve } from "node:path";

/**
 * File extensions loaded as handlers; files starting with `_` or `.` are helpers, not handlers.
 * A `.wasm` file is a raw WebAssembly handler, with its manifest in the `.json` file beside it.
 */
export const HANDLER_EXTENSIONS = [".ts", ".js", ".mjs", ".mts", ".wasm"] as const;

/** Whether a file name is loaded as a handler. */
export function isHandlerFile(f: string): boolean {
  return !f.startsWith("_") && !f.startsWith(".") && !f.endsWith(".d.ts") &&
    (HANDLER_EXTENSIONS as readonly string[]).includes(extname(f));
}

/**
 * A handler's own input files from esbuild's metafile, absolute: virtual entries (`ns:path`),
 * the SDK under `<root>/src` and packages left out.
 * @param root the outpost package directory, when the SDK comes from source
 */
export function ownInputs(inputs: string[], root?: string): string[] {
  return inputs.filter((i) => !i.includes(":")).map((i) => resolve(i))
    .filter((p) => !(root && p.startsWith(join(root, "src"))) && !p.includes("/node_modules/"));
}

/** Write a file whole: to a temporary name beside it, then renamed (a reader never sees half of it). */
export async function writeWhole(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/**
 * Whether any of a handler's own files (`ownInputs`) mentions "wasm". One that does not cannot ask
 * for the wasm tier, so it starts in a worker without being evaluated in QuickJS first.
 */
export async function mentionsWasm(ownFiles: string[]): Promise<boolean> {
  for (const path of ownFiles) {
    try {
      if (/wasm/i.test(await readFile(path, "utf8"))) return true;
    } catch {
      return true; // unreadable: be careful
    }
  }
  return false;
}

/** The file each generated module is written to, after the stem. */
const _SUFFIX = { handler: ".handler.mjs", schema: ".schema.mjs", guest: ".guest.mjs", guestPart: ".guest-part.mjs" } as const;
type _Module = keyof typeof _SUFFIX;

/**
 * Write a handler's modules (and the source maps of those that run its code) as
 * `<stem>.handler.mjs`, `<stem>.schema.mjs`, `<stem>.guest.mjs` and, when built,
 * `<stem>.guest-part.mjs` (the wasm-tier guest without its prelude, `guest_split.ts`).
 * @returns their paths
 */
export async function writeBundles(
  outDir: string,
  stem: string,
  code: Record<"handler" | "schema" | "guest", string | Uint8Array> & { guestPart?: string | Uint8Array },
  maps: Partial<Record<Exclude<_Module, "schema">, string | Uint8Array | undefined>> = {},
): Promise<Record<"handler" | "schema" | "guest", string> & { guestPart?: string }> {
  await mkdir(outDir, { recursive: true });
  const paths: Partial<Record<_Module, string>> = {};
  for (const k of Object.keys(code) as _Module[]) {
    const text = code[k];
    if (text === undefined) continue;
    const path = paths[k] = join(outDir, `${stem}${_SUFFIX[k]}`);
    await writeFile(path, text);
    const m = k === "schema" ? undefined : maps[k];
    if (m) await writeFile(`${path}.map`, m);
  }
  return paths as Record<"handler" | "schema" | "guest", string> & { guestPart?: string };
}
