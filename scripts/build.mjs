// Builds bundles/outpost.js: the whole host in one minified ESM file that node, deno and bun run
// as is, with nothing beside it. The handler SDK (src/sdk/handler.ts + valibot) and the isolate
// bootstraps are embedded as prebuilt ESM text, so a device builds drop-in handlers without src/ or
// node_modules. esbuild is not inside (a native binary per platform): the host imports it lazily
// when it exists beside the file and otherwise loads plain .js/.mjs handlers (and .ts on Deno, Bun).
import * as esbuild from "esbuild";
import { spawnSync } from "node:child_process";
import { readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Bundle one module of the SDK into self-contained, minified ESM text. */
async function sdkModule(entry, minify, plugins = [], keepNames = false) {
  const r = await esbuild.build({
    entryPoints: [entry.startsWith("/") ? entry : join(ROOT, entry)],
    plugins,
    bundle: true,
    write: false,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    external: ["node:*", "bun:*"],
    minify,
    keepNames,
    legalComments: "none",
    logLevel: "warning",
  });
  return r.outputFiles[0].text;
}

/**
 * Build the single file.
 * @param {{ out?: string, minify?: boolean }} o
 * @returns {Promise<{ out: string, bytes: number, sdkBytes: number }>}
 */
export async function buildSingleFile(o = {}) {
  const out = o.out ?? join(ROOT, "bundles/outpost.js");
  const minify = o.minify ?? !process.env.OUTPOST_BUILD_DEV;
  // The SDK imports valibot from the module beside it, so a handler build shakes valibot down to
  // the pieces the handler uses instead of carrying all of it.
  const valibotBeside = {
    name: "valibot-beside",
    setup: (b) => b.onResolve({ filter: /^valibot$/ }, () => ({ path: "./valibot.mjs", external: true })),
  };
  const embedded = {
    sdk: await sdkModule("src/sdk/handler.ts", minify, [valibotBeside]),
    valibot: await sdkModule(fileURLToPath(import.meta.resolve("valibot")), minify),
    isolate: await sdkModule("src/sandbox/worker/main.ts", minify, [valibotBeside]),
    validator: await sdkModule("src/schemas/main.ts", minify, [valibotBeside]),
    handlerProcess: await sdkModule("src/sandbox/worker/process_main.ts", minify),
    // The dashboard's charts (uPlot, MIT): served by the host at /ui/uplot.js.
    uplotJs: await readFile(join(ROOT, "node_modules/uplot/dist/uPlot.iife.min.js"), "utf8"),
    uplotCss: await readFile(join(ROOT, "node_modules/uplot/dist/uPlot.min.css"), "utf8"),
    guest: await sdkModule("src/sandbox/quickjs/guest.ts", minify, [valibotBeside]).catch(() => ""),
    // The wasm tier's prelude (bootstrap + SDK, valibot shaken into it), evaluated by a spare
    // sandbox as it is: names kept, as in a handler's build.
    prelude: await sdkModule("src/sandbox/quickjs/prelude.ts", minify, [], true),
    // The wasm tier's engine, so the file alone runs wasm-tier handlers (gzip: 503 KB → 231 KB).
    quickjsWasm: gzipSync(await readFile(createRequire(join(ROOT, "package.json")).resolve("@jitl/quickjs-wasmfile-release-sync/wasm")), { level: 9 }).toString("base64"),
  };
  await esbuild.build({
    entryPoints: [join(ROOT, "src/cli/bin.ts")],
    outfile: out,
    bundle: true,
    format: "esm",
    platform: "node",
    target: ["node20", "es2022"],
    minify,
    legalComments: "none",
    define: { __OUTPOST_EMBEDDED__: JSON.stringify(embedded) },
    plugins: [{
      // `import * as esbuild from "esbuild"` (the source build path) becomes a lazy import that
      // resolves to nothing on a device without esbuild.
      name: "lazy-esbuild",
      setup(b) {
        b.onResolve({ filter: /^esbuild$/ }, (a) => (a.namespace === "lazy-esbuild" || a.kind === "dynamic-import" ? { path: "esbuild", external: true } : { path: "esbuild", namespace: "lazy-esbuild" }));
        b.onLoad({ filter: /.*/, namespace: "lazy-esbuild" }, () => ({
          // Imported on first use only: esbuild's JavaScript alone costs a host ~16 MB of memory.
          contents: "let m;\nconst load = async () => (m === undefined ? (m = await import('esbuild').catch(() => null)) : m);\n" +
            "const missing = () => new Error('esbuild is not installed beside outpost.js');\n" +
            "export const build = async (...a) => { const e = await load(); if (!e) throw missing(); return e.build(...a); };\n" +
            "export const transform = async (...a) => { const e = await load(); if (!e) throw missing(); return e.transform(...a); };\n" +
            "export const stop = async () => { if (m) await m.stop(); };\n",
          loader: "js",
        }));
      },
    }],
    // Dependencies written as CommonJS (nkeys, the Node transport's) call require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: "warning",
  });
  const sdkBytes = Object.entries(embedded).reduce((a, [k, t]) => a + (k === "quickjsWasm" || k.startsWith("uplot") ? 0 : t.length), 0);
  return { out, bytes: (await stat(out)).size, sdkBytes, wasmBytes: embedded.quickjsWasm.length };
}

/**
 * Build what the package gives handler authors: `dist/handler.js` and `dist/testing.js` (ESM, one
 * shared chunk so both see the same classes) and their
 * declaration files in `dist/types` (tsc), for `outpost/handler` and `outpost/testing`.
 * @returns {Promise<{ files: number }>}
 */
export async function buildSdkPackage() {
  const dist = join(ROOT, "dist");
  await rm(dist, { recursive: true, force: true });
  await esbuild.build({
    entryPoints: { handler: join(ROOT, "src/sdk/handler.ts"), testing: join(ROOT, "src/sdk/testing.ts") },
    outdir: dist,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    // valibot stays an import (the handler's schemas and the SDK share it); the CBOR codec is ours,
    // pure JavaScript, so invoke() needs no native module and no environment access.
    external: ["valibot"],
    mainFields: ["module", "main"],
    legalComments: "none",
    logLevel: "warning",
  });
  const tsc = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.sdk.json")], { stdio: "inherit" });
  if (tsc.status !== 0) throw new Error("tsc could not write the SDK's declaration files");
  // The sources import each other as `./x.ts`. In the declarations those imports must name the
  // `.d.ts` files themselves: Deno resolves exactly what is written (no `.js` → `.d.ts` guess), and
  // TypeScript accepts a `.d.ts` specifier in a type-only import. Every such import is type-only.
  let files = 0;
  for (const f of await readdir(join(dist, "types"), { recursive: true })) {
    if (!f.endsWith(".d.ts")) continue;
    const path = join(dist, "types", f);
    const text = await readFile(path, "utf8");
    const out = text.replace(/^import (?:type )?\{([^}]*)\} from (["'])(\.\.?\/[^"']+)\.ts\2;$/gm, (_m, names, q, path) =>
      `import type {${names.replace(/\btype\s+/g, "")}} from ${q}${path}.d.ts${q};`)
      // Types tsc inlines as import("./x.ts").Name.
      .replace(/\bimport\((["'])(\.\.?\/[^"']+)\.ts\1\)/g, (_m, q, path) => `import(${q}${path}.d.ts${q})`);
    if (/from\s+["']\.\.?\/[^"']+\.ts["']/.test(out.replace(/\.d\.ts(["'])/g, "$1"))) throw new Error(`${f}: a relative import the declaration rewrite does not know`);
    await writeFile(path, out);
    files++;
  }
  return { files };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await buildSdkPackage();
  const r = await buildSingleFile({ out: "bundles/outpost.js" });
  if (!process.argv.includes("--quiet")) console.log(`${r.out}: ${r.bytes} bytes (of which ${r.sdkBytes} bytes embedded handler SDK, ${r.wasmBytes} bytes the wasm tier's engine)`);
}
