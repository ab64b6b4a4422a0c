import { mkdir, writeFile } from "node:fs/promises";
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

/**
 * Write a handler's three modules (and the source maps of the two that run its code) as
 * `<stem>.handler.mjs`, `<stem>.schema.mjs`, `<stem>.guest.mjs`.
 * @returns their paths
 */
export async function writeBundles(
  outDir: string,
  stem: string,
  code: Record<"handler" | "schema" | "guest", string | Uint8Array>,
  maps: Partial<Record<"handler" | "guest", string | Uint8Array | undefined>> = {},
): Promise<Record<"handler" | "schema" | "guest", string>> {
  await mkdir(outDir, { recursive: true });
  const paths = { handler: join(outDir, `${stem}.handler.mjs`), schema: join(outDir, `${stem}.schema.mjs`), guest: join(outDir, `${stem}.guest.mjs`) };
  for (const k of ["handler", "schema", "guest"] as const) {
    await writeFile(paths[k], code[k]);
    const m = k === "schema" ? undefined : maps[k];
    if (m) await writeFile(`${paths[k]}.map`, m);
  }
  return paths;
}
