import { mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import { HandlerLoadError } from "../errors.ts";
import { directValibotImport } from "./sdk_imports.ts";
import { buildEmbedded, buildEmbeddedValidator } from "./embedded_build.ts";
import { EMBEDDED } from "./embedded.ts";
import { mentionsWasm, ownInputs, writeBundles, writeWhole } from "./handler_files.ts";
import { packageRoot } from "../util/package_root.ts";
import { sha256Hex } from "../util/hash.ts";
import { VERSION } from "../version.ts";
import { BUILD_LAYOUT, cachedBuild, fileInputs, keepBuild } from "./build_cache.ts";
import type { GuestModules } from "../sandbox/quickjs/sandbox.ts";
import { guestPartEntry, guestPartPlugin, partLinks } from "./guest_split.ts";

/** A handler bundled into the files the isolates load. */
export interface BuiltHandler {
  /** A JavaScript/TypeScript module, or a raw `.wasm` module with its `.json` manifest. */
  kind: "module" | "wasm-module";
  /** Handler name: the file name without extension. */
  name: string;
  /** Absolute path of the source module. */
  file: string;
  /** First 12 hex digits of the SHA-256 of the bundled handler: its version. */
  hash: string;
  /** Entry of the handler's worker isolate (bootstrap + handler). */
  handlerUrl: URL;
  /** Module whose default export is the definition, for the schema isolate. */
  schemaUrl: URL;
  /** Module for a wasm-tier sandbox (QuickJS): the guest bootstrap + handler, no `node:` imports. */
  guestUrl: URL;
  /**
   * Whether the handler's own source files (not the SDK, not packages) contain "wasm" at all. When
   * they do not, the handler cannot ask for the wasm tier and is started in a worker directly.
   */
  mentionsWasm?: boolean;
  /** The handler's own source files the build read (absolute; not the SDK, not packages): a change to any reloads it. */
  inputs?: string[];
  /** What the wasm-tier guest may import when `guestUrl` is not self-contained (built without esbuild). */
  guestModules?: GuestModules;
  /**
   * The wasm-tier guest in two files (paths): the prelude every handler of this build shares, which a
   * spare sandbox evaluates ahead of need, and the handler's own part that imports it. Absent when
   * built without esbuild; `guestUrl` then serves alone.
   */
  guestSplit?: { part: string; prelude: string };
  /** The generated modules that run the handler's code, each with its source map beside (`<file>.map`). */
  bundleFiles?: string[];
}

let _idle: ReturnType<typeof setTimeout> | undefined;

/**
 * esbuild.build, then stop esbuild's service process after 30 s without builds: on a small device
 * it would otherwise keep its memory for the life of the host (the next build starts it again).
 */
async function _build(o: esbuild.BuildOptions): Promise<esbuild.BuildResult> {
  clearTimeout(_idle);
  try {
    return await esbuild.build(o);
  } finally {
    _idle = setTimeout(() => void esbuild.stop(), 30_000);
    (_idle as { unref?: () => void }).unref?.();
  }
}

function _plugin(root: string, entries: Record<string, string>): esbuild.Plugin {
  return {
    name: "outpost",
    setup(b) {
      b.onResolve({ filter: /^outpost\/handler$/ }, () => ({ path: join(root, "src/sdk/handler.ts") }));
      // Handler sources (not the SDK, not packages): `v` straight from valibot, so it tree-shakes.
      b.onLoad({ filter: /\.(m?[jt]s)$/ }, async (a) => {
        if (a.path.startsWith(join(root, "src")) || a.path.includes("/node_modules/")) return undefined;
        const text = await readFile(a.path, "utf8");
        return { contents: directValibotImport(text), loader: /\.m?ts$/.test(a.path) ? "ts" : "js", resolveDir: dirname(a.path) };
      });
      b.onResolve({ filter: /^outpost-entry:/ }, (a) => ({ path: a.path, namespace: "outpost-entry" }));
      b.onLoad({ filter: /.*/, namespace: "outpost-entry" }, (a) => ({
        contents: entries[a.path.slice("outpost-entry:".length)] ?? "",
        resolveDir: root,
        loader: "js",
      }));
    },
  };
}

const _common = (root: string): esbuild.BuildOptions => ({
  bundle: true,
  write: false,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  mainFields: ["module", "main"],
  external: ["node:*", "bun:*"],
  nodePaths: [join(root, "node_modules")],
  logLevel: "silent",
  legalComments: "none",
  minify: true,
  keepNames: true,
  // Maps beside the bundles (`<bundle>.map`), read only when a stack trace is mapped.
  sourcemap: "external",
  sourcesContent: false,
});

/**
 * Bundle a handler module with esbuild into a self-contained worker entry and schema module.
 * @param file the handler's source
 * @param outDir where bundles are written, named by content hash
 * @throws HandlerLoadError with esbuild's messages (file:line:column)
 */
export async function buildHandler(file: string, outDir: string): Promise<BuiltHandler> {
  // The single-file build has no src/ beside it: it builds against its embedded SDK.
  if (EMBEDDED && extname(file) !== ".wasm") return await buildEmbedded(EMBEDDED, file, outDir);
  const root = await packageRoot();
  const abs = resolve(file);
  if (extname(abs) === ".wasm") return await _buildRawWasm(root, abs, outDir);
  // From source, the SDK's files are inputs of the build like the handler's: the cache checks them all.
  const identity = `source ${VERSION} layout ${BUILD_LAYOUT}`;
  const kept = await cachedBuild(outDir, identity, abs);
  if (kept) return kept;
  const spec = JSON.stringify(abs);
  const entries = {
    handler: `import { runIsolate } from ${JSON.stringify(join(root, "src/sandbox/worker/main.ts"))};\n` +
      `runIsolate(() => import(${spec}));\n`,
    schema: `export { default } from ${spec};\n`,
    // The guest bootstrap is imported first: it takes the host's functions before handler code runs.
    guest: `import { serveGuest } from ${JSON.stringify(join(root, "src/sandbox/quickjs/guest.ts"))};\n` +
      `import * as mod from ${spec};\nserveGuest(mod.default);\n`,
  };
  let result: esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  try {
    result = await _build({
      ..._common(root),
      entryPoints: { handler: "outpost-entry:handler", schema: "outpost-entry:schema", guest: "outpost-entry:guest" },
      outdir: outDir,
      plugins: [_plugin(root, entries)],
      metafile: true,
    }) as typeof result;
  } catch (e) {
    throw new HandlerLoadError(`Cannot build handler ${basename(file)}: ${_esbuildMessage(e)}`, { cause: e });
  }
  const out = (n: string) => result.outputFiles.find((f) => f.path.endsWith(`${n}.js`))!.contents;
  const map = (n: string) => result.outputFiles.find((f) => f.path.endsWith(`${n}.js.map`))?.contents;
  const hash = await sha256Hex(out("handler"));
  const name = basename(abs, extname(abs));
  const part = await _guestPart(root, abs, outDir);
  const paths = await writeBundles(outDir, `${name}-${hash.slice(0, 12)}`,
    { handler: out("handler"), schema: out("schema"), guest: out("guest"), ...(part ? { guestPart: part.code } : {}) },
    { handler: map("handler"), guest: map("guest"), ...(part ? { guestPart: part.map } : {}) });
  const built: BuiltHandler = {
    kind: "module", name, file: abs, hash: hash.slice(0, 12),
    handlerUrl: pathToFileURL(paths.handler), schemaUrl: pathToFileURL(paths.schema), guestUrl: pathToFileURL(paths.guest),
    bundleFiles: [paths.handler, paths.guest, ...(paths.guestPart ? [paths.guestPart] : [])],
    ...(part && paths.guestPart ? { guestSplit: { part: paths.guestPart, prelude: part.prelude } } : {}),
    mentionsWasm: await mentionsWasm(ownInputs(Object.keys(result.metafile?.inputs ?? {}), root)),
    inputs: ownInputs(Object.keys(result.metafile?.inputs ?? {}), root),
  };
  await keepBuild(outDir, identity, abs, fileInputs(Object.keys(result.metafile?.inputs ?? {})), built);
  return built;
}

const _preludes = new Map<string, Promise<string>>();

/** The wasm-tier prelude built from source, written once per process into `outDir`: its path. */
function _sourcePrelude(root: string, outDir: string): Promise<string> {
  let p = _preludes.get(outDir);
  if (!p) {
    p = (async () => {
      const r = await _build({ ..._common(root), sourcemap: false, entryPoints: [join(root, "src/sandbox/quickjs/prelude.ts")], outdir: outDir }) as
        esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
      const code = r.outputFiles[0]!.contents;
      const path = join(outDir, `prelude-${(await sha256Hex(code)).slice(0, 12)}.mjs`);
      await mkdir(outDir, { recursive: true });
      await writeWhole(path, code);
      return path;
    })();
    p.catch(() => _preludes.delete(outDir));
    _preludes.set(outDir, p);
  }
  return p;
}

/**
 * The handler's guest part (the guest without the prelude), or undefined when it does not build
 * that way: the self-contained guest then serves alone.
 */
async function _guestPart(root: string, abs: string, outDir: string): Promise<{ code: Uint8Array; map?: Uint8Array; prelude: string } | undefined> {
  try {
    const prelude = await _sourcePrelude(root, outDir);
    const r = await _build({
      ..._common(root),
      entryPoints: { "guest-part": "outpost-entry:guest-part" },
      outdir: outDir,
      plugins: [guestPartPlugin, _plugin(root, { "guest-part": guestPartEntry(abs) })],
    }) as esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
    const code = r.outputFiles.find((f) => f.path.endsWith("guest-part.js"))!.contents;
    if (!partLinks(new TextDecoder().decode(code))) return undefined;
    const map = r.outputFiles.find((f) => f.path.endsWith("guest-part.js.map"))?.contents;
    return { code, ...(map ? { map } : {}), prelude };
  } catch {
    return undefined;
  }
}

/** A raw `.wasm` handler: checks its manifest and memory, bundles a worker entry embedding both. */
async function _buildRawWasm(root: string, abs: string, outDir: string): Promise<BuiltHandler> {
  const { buildRawWasmEntry } = await import("../sandbox/raw_wasm/build.ts");
  let entry: { code: string; version: Uint8Array };
  try {
    entry = await buildRawWasmEntry(abs, join(root, "src/sandbox/raw_wasm/main.ts"));
  } catch (e) {
    throw new HandlerLoadError(`Cannot build handler ${basename(abs)}: ${(e as Error).message}`, { cause: e });
  }
  const result = await _build({
    ..._common(root),
    entryPoints: { handler: "outpost-entry:handler" },
    sourcemap: false,
    outdir: outDir,
    plugins: [_plugin(root, { handler: entry.code })],
  }) as esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  const hash = (await sha256Hex(entry.version)).slice(0, 12);
  const name = basename(abs, ".wasm");
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, `${name}-${hash}.wasm-handler.mjs`);
  await writeFile(path, result.outputFiles[0]!.contents);
  const url = pathToFileURL(path);
  return { kind: "wasm-module", name, file: abs, hash, handlerUrl: url, schemaUrl: url, guestUrl: url };
}

/**
 * Write the handler process's entry into the bundle directory (the child only reads there).
 * @returns its path
 */
export async function buildHandlerProcess(outDir: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, "handler-process.mjs");
  if (EMBEDDED) {
    await writeFile(path, EMBEDDED.handlerProcess);
    return path;
  }
  const root = await packageRoot();
  const result = await _build({
    ..._common(root),
    entryPoints: { process: join(root, "src/sandbox/worker/process_main.ts") },
    sourcemap: false,
    outdir: outDir,
  }) as esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  await writeFile(path, result.outputFiles[0]!.contents);
  return path;
}

/**
 * Bundle the schema isolate's entry.
 * @returns its file URL
 */
export async function buildValidator(outDir: string): Promise<URL> {
  if (EMBEDDED) return await buildEmbeddedValidator(EMBEDDED, outDir);
  const root = await packageRoot();
  const entries = {
    validator: `import { runValidator } from ${JSON.stringify(join(root, "src/schemas/main.ts"))};\nrunValidator();\n`,
  };
  const result = await _build({
    ..._common(root),
    entryPoints: { validator: "outpost-entry:validator" },
    sourcemap: false,
    outdir: outDir,
    plugins: [_plugin(root, entries)],
  }) as esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, "validator.mjs");
  await writeFile(path, result.outputFiles[0]!.contents);
  return pathToFileURL(path);
}

function _esbuildMessage(e: unknown): string {
  const errors = (e as { errors?: esbuild.Message[] }).errors;
  if (!errors?.length) return e instanceof Error ? e.message : String(e);
  return errors
    .slice(0, 5)
    .map((m) => (m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ${m.text}` : m.text))
    .join("\n");
}
