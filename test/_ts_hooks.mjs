import { readFile } from "node:fs/promises";
import { transform } from "esbuild";

export async function load(url, context, next) {
  if (url.startsWith("file:") && url.endsWith(".ts")) {
    const source = await readFile(new URL(url), "utf8");
    const { code } = await transform(source, { loader: "ts", format: "esm", target: "node20", sourcemap: "inline", sourcefile: url });
    return { format: "module", source: code, shortCircuit: true };
  }
  return next(url, context);
}
