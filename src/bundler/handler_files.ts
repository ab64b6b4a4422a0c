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
