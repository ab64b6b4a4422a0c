import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { HandlerLoadError } from "../errors.ts";

let _root: string | undefined;

/**
 * The outpost package directory (holding `src/`), found from this module's location, which
 * works both from `src/` and from the single-file `bundles/outpost.js`.
 */
export async function packageRoot(): Promise<string> {
  if (_root) return _root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as { name?: string };
      if (pkg.name === "outpost") return (_root = dir);
    } catch { /* keep looking */ }
    dir = dirname(dir);
  }
  throw new HandlerLoadError("Cannot find the outpost package directory (with src/sdk/handler.ts) above " + import.meta.url);
}
