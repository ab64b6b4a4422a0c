// Builds bundles/outpost.js: the whole host in one ESM file that node, deno and bun run as is.
// esbuild stays external: it is the handler bundler and ships a native binary per platform.
import * as esbuild from "esbuild";
import { stat } from "node:fs/promises";

const quiet = process.argv.includes("--quiet");
const out = "bundles/outpost.js";
await esbuild.build({
  entryPoints: ["src/cli/bin.ts"],
  outfile: out,
  bundle: true,
  format: "esm",
  platform: "node",
  target: ["node20", "es2022"],
  minify: !process.env.OUTPOST_BUILD_DEV,
  legalComments: "none",
  external: ["esbuild"],
  // cbor-x's Node entry loads its optional native accelerator through require().
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: "warning",
});
if (!quiet) console.log(`${out}: ${(await stat(out)).size} bytes`);
