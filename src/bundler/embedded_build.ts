import { BUILD_LAYOUT, cachedBuild, fileInputs, keepBuild } from "./build_cache.ts";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type * as Esbuild from "esbuild";
import { HandlerLoadError } from "../errors.ts";
import type { BuiltHandler } from "./bundle.ts";
import type { EmbeddedSdk } from "./embedded.ts";
import type { GuestModules } from "../sandbox/quickjs/sandbox.ts";
import { mentionsWasm as mentionsWasmIn, ownInputs, writeBundles, writeWhole } from "./handler_files.ts";
import { directValibotImport } from "./sdk_imports.ts";
import { guestPartEntry, guestPartPlugin, partLinks } from "./guest_split.ts";

let _esbuild: typeof Esbuild | null | undefined;

/** esbuild when it can be imported beside the single file (a dev machine), else null (a device). */
let _idle: ReturnType<typeof setTimeout> | undefined;

async function _loadEsbuild(): Promise<typeof Esbuild | null> {
  if (_esbuild !== undefined) return _esbuild;
  try {
    const name = "esbuild"; // a variable: the single-file build must not try to inline it
    _esbuild = (await import(name)) as typeof Esbuild;
    await _esbuild.transform("1", {}); // the native binary is there and runs
  } catch {
    _esbuild = null;
  }
  return _esbuild;
}

/**
 * Build a handler with the SDK embedded in the single file: with esbuild when it is importable;
 * otherwise without a bundler: a `.js`/`.mjs` module (or `.ts` on Deno and Bun, which strip types
 * themselves) whose `outpost/handler` import is pointed at the embedded SDK. OTA bundles carry
 * prebuilt modules, so a device never needs esbuild for them.
 * @param file the handler's source
 * @param outDir the build directory
 */
export async function buildEmbedded(sdk: EmbeddedSdk, file: string, outDir: string): Promise<BuiltHandler> {
  const abs = resolve(file);
  const name = basename(abs, extname(abs));
  const dir = await _writeSdk(sdk, outDir);
  // The embedded SDK is part of the build: its hash (the sdk-<hash> directory) is the identity. A
  // kept build (only builds by esbuild are kept) needs no esbuild: a restart starts none.
  const identity = `embedded ${basename(dir)} layout ${BUILD_LAYOUT}`;
  const kept = await cachedBuild(outDir, identity, abs);
  if (kept) return kept;
  const esbuild = await _loadEsbuild();
  let allInputs: string[] = [];
  let code: Record<"handler" | "schema" | "guest", string>;
  let maps: Partial<Record<"handler" | "guest", string | undefined>> = {};
  // The handler's own files the build read: a change to any of them reloads it.
  let inputs = [abs];
  const bundleFiles: string[] = [];
  let guestModules: GuestModules | undefined;
  let part: { code: string; map: string | undefined } | undefined;
  let mentionsWasm: boolean | undefined;
  if (esbuild) {
    const entries: Record<string, string> = {
      handler: `import { runIsolate } from "outpost-sdk:isolate";\nrunIsolate(() => import(${JSON.stringify(abs)}));\n`,
      schema: `export { default } from ${JSON.stringify(abs)};\n`,
      guest: `import { serveGuest } from "outpost-sdk:guest";\nimport * as mod from ${JSON.stringify(abs)};\nserveGuest(mod.default);\n`,
      "guest-part": guestPartEntry(abs),
    };
    clearTimeout(_idle);
    try {
      const plugin: Esbuild.Plugin = {
          name: "outpost-embedded",
          setup(b) {
            b.onResolve({ filter: /^outpost\/handler$/ }, () => ({ path: "sdk", namespace: "outpost-sdk" }));
            b.onResolve({ filter: /^outpost-sdk:/ }, (a) => ({ path: a.path.slice(12), namespace: "outpost-sdk" }));
            // valibot, from the handler (`v`, rewritten below) and from the SDK, is the one embedded module.
            b.onResolve({ filter: /^(valibot|\.\/valibot\.mjs)$/ }, (a) =>
              a.path === "valibot" && a.namespace === "file" && a.importer.includes("/node_modules/") ? undefined : { path: "valibot", namespace: "outpost-sdk" });
            b.onResolve({ filter: /^outpost-entry:/ }, (a) => ({ path: a.path.slice(14), namespace: "outpost-entry" }));
            b.onLoad({ filter: /.*/, namespace: "outpost-sdk" }, (a) => ({ contents: sdk[a.path as keyof EmbeddedSdk], loader: "js" }));
            b.onLoad({ filter: /.*/, namespace: "outpost-entry" }, (a) => ({ contents: entries[a.path] ?? "", resolveDir: dirname(abs), loader: "js" }));
            b.onLoad({ filter: /\.(m?[jt]s)$/ }, async (a) => {
              if (a.path.includes("/node_modules/")) return undefined;
              const text = await readFile(a.path, "utf8");
              return { contents: directValibotImport(text), loader: /\.m?ts$/.test(a.path) ? "ts" : "js", resolveDir: dirname(a.path) };
            });
          },
      };
      const options: Esbuild.BuildOptions & { write: false } = {
        bundle: true, write: false, format: "esm", platform: "neutral", target: "es2022", mainFields: ["module", "main"],
        external: ["node:*"], logLevel: "silent", legalComments: "none", outdir: outDir, metafile: true,
        // As from source: minified with names kept, maps beside, valibot shaken to what the handler uses.
        minify: true, keepNames: true, sourcemap: "external", sourcesContent: false,
      };
      const r = await esbuild.build({
        ...options,
        entryPoints: { handler: "outpost-entry:handler", schema: "outpost-entry:schema", guest: "outpost-entry:guest" },
        plugins: [plugin],
      });
      // The guest again without the prelude (guest_split.ts); a part that would not link is left out.
      const p = await esbuild.build({ ...options, metafile: false, entryPoints: { "guest-part": "outpost-entry:guest-part" }, plugins: [guestPartPlugin, plugin] });
      const partCode = p.outputFiles.find((o) => o.path.endsWith("guest-part.js"))?.text;
      if (partCode && partLinks(partCode)) {
        part = { code: partCode, map: p.outputFiles.find((o) => o.path.endsWith("guest-part.js.map"))?.text };
      }
      const text = (n: string) => {
        const f = r.outputFiles.find((o) => o.path.endsWith(n));
        return f ? new TextDecoder().decode(f.contents) : undefined;
      };
      code = { handler: text("handler.js")!, schema: text("schema.js")!, guest: text("guest.js")! };
      maps = { handler: text("handler.js.map"), guest: text("guest.js.map") };
      inputs = ownInputs(Object.keys(r.metafile?.inputs ?? {}));
      mentionsWasm = await mentionsWasmIn(inputs);
      allInputs = fileInputs(Object.keys(r.metafile?.inputs ?? {}));
    } catch (e) {
      const errs = (e as { errors?: Esbuild.Message[] }).errors;
      const msg = errs?.length
        ? errs.slice(0, 5).map((m) => (m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ${m.text}` : m.text)).join("\n")
        : (e as Error).message;
      throw new HandlerLoadError(`Cannot build handler ${basename(file)}: ${msg}`, { cause: e });
    } finally {
      // esbuild's service process keeps ~30 MB for the life of the host otherwise; the next build starts it again.
      _idle = setTimeout(() => void esbuild.stop(), 30_000);
      (_idle as { unref?: () => void }).unref?.();
    }
  } else {
    const ext = extname(abs);
    const typeStripping = "Deno" in globalThis || "Bun" in globalThis;
    if (![".js", ".mjs"].includes(ext) && !typeStripping) {
      throw new HandlerLoadError(
        `Cannot build handler ${basename(file)}: this runtime cannot load ${ext} files without esbuild; ` +
          "use .js/.mjs, ship it in an OTA bundle (outpost pack prebuilds it), or install esbuild beside outpost.js",
      );
    }
    const src = await readFile(abs, "utf8");
    const sdkUrl = pathToFileURL(join(dir, "sdk.mjs")).href;
    // Bare `outpost/handler` → the embedded SDK; relative imports → absolute, since the copy lives elsewhere.
    const rewritten = src
      .replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])outpost\/handler\2/g, (_m, pre: string) => `${pre}${JSON.stringify(sdkUrl)}`)
      .replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(\.\.?\/[^"']+)\2/g, (_m, pre: string, _q: string, rel: string) =>
        `${pre}${JSON.stringify(pathToFileURL(join(dirname(abs), rel)).href)}`);
    const hash = (await _sha256(rewritten)).slice(0, 12);
    const copy = join(outDir, `${name}-${hash}.module${ext === ".js" ? ".mjs" : ext}`);
    await mkdir(outDir, { recursive: true });
    await writeFile(copy, rewritten);
    const modUrl = JSON.stringify(pathToFileURL(copy).href);
    // The worker tier imports a copy that keeps every line and column of the original but for
    // rewritten import specifiers: a map of one segment per line, marked so that frames keep their
    // column, names the original.
    const lines = rewritten.split("\n").length;
    await writeFile(`${copy}.map`, JSON.stringify({ version: 3, sources: [pathToFileURL(abs).href], names: [], mappings: `AAAA${";AACA".repeat(lines - 1)}`, x_outpost_same_columns: true }));
    bundleFiles.push(copy);
    code = {
      handler: `import { runIsolate } from ${JSON.stringify(pathToFileURL(join(dir, "isolate.mjs")).href)};\nrunIsolate(() => import(${modUrl}));\n// ${hash}\n`,
      schema: `export { default } from ${modUrl};\n`,
      // The wasm tier's QuickJS loads the original file itself, through a loader that reaches only
      // the SDK and the handler's directory (GuestModules); the bootstrap is evaluated first.
      guest: `import { serveGuest } from "outpost-sdk:guest";\nimport * as mod from ${JSON.stringify(abs)};\nserveGuest(mod.default);\n// ${hash}\n`,
    };
    guestModules = { sdkDir: dir, roots: [dirname(abs)] };
    mentionsWasm = /wasm/i.test(src);
  }
  const hash = (await _sha256(code.handler)).slice(0, 12);
  const paths = await writeBundles(outDir, `${name}-${hash}`, { ...code, ...(part ? { guestPart: part.code } : {}) }, { ...maps, ...(part ? { guestPart: part.map } : {}) });
  const built: BuiltHandler = {
    kind: "module", name, file: abs, hash,
    handlerUrl: pathToFileURL(paths.handler), schemaUrl: pathToFileURL(paths.schema), guestUrl: pathToFileURL(paths.guest),
    bundleFiles: [...bundleFiles, paths.handler, paths.guest, ...(paths.guestPart ? [paths.guestPart] : [])],
    ...(paths.guestPart ? { guestSplit: { part: paths.guestPart, prelude: join(dir, "prelude.mjs") } } : {}),
    ...(guestModules ? { guestModules } : {}),
    ...(mentionsWasm === undefined ? {} : { mentionsWasm }),
    inputs,
  };
  if (esbuild) await keepBuild(outDir, identity, abs, allInputs, built);
  return built;
}

/**
 * Write the schema isolate's entry from the embedded SDK.
 * @returns its file URL
 */
export async function buildEmbeddedValidator(sdk: EmbeddedSdk, outDir: string): Promise<URL> {
  const dir = await _writeSdk(sdk, outDir);
  const path = join(outDir, "validator.mjs");
  await writeFile(path, `import { runValidator } from ${JSON.stringify(pathToFileURL(join(dir, "validator.mjs")).href)};\nrunValidator();\n`);
  return pathToFileURL(path);
}

const _sdkDirs = new Map<string, Promise<string>>();

/** The SDK's modules in `<outDir>/sdk-<hash>/`, written once per process (each file whole: temp, then rename). */
function _writeSdk(sdk: EmbeddedSdk, outDir: string): Promise<string> {
  let p = _sdkDirs.get(outDir);
  if (!p) {
    p = (async () => {
      const dir = join(outDir, `sdk-${(await _sha256(sdk.sdk + sdk.valibot + sdk.isolate + sdk.validator + sdk.guest + sdk.prelude)).slice(0, 12)}`);
      await mkdir(dir, { recursive: true });
      for (const k of ["sdk", "valibot", "isolate", "validator", "guest", "prelude"] as const) {
        await writeWhole(join(dir, `${k}.mjs`), sdk[k]);
      }
      return dir;
    })();
    p.catch(() => _sdkDirs.delete(outDir));
    _sdkDirs.set(outDir, p);
  }
  return p;
}

async function _sha256(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}
