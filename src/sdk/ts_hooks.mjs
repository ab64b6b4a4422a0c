// Transforms each imported .ts file (outside node_modules) with esbuild: the loader behind outpost/register.
import { readFile } from "node:fs/promises";
import { transform } from "esbuild";

export async function load(url, context, next) {
  if (url.startsWith("file:") && /\.m?ts$/.test(url) && !url.includes("/node_modules/")) {
    const source = await readFile(new URL(url), "utf8");
    const { code } = await transform(source, { loader: "ts", format: "esm", target: "node20", sourcemap: "inline", sourcefile: url });
    return { format: "module", source: code, shortCircuit: true };
  }
  return next(url, context);
}
