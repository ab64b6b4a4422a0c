import { mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import { HandlerLoadError } from "../errors.ts";

/** A handler bundled into the two files the isolates load. */
export interface BuiltHandler {
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
}

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
  throw new HandlerLoadError("Cannot find the outpost package directory (with src/handler.ts) above " + import.meta.url);
}

function _plugin(root: string, entries: Record<string, string>): esbuild.Plugin {
  return {
    name: "outpost",
    setup(b) {
      b.onResolve({ filter: /^outpost\/handler$/ }, () => ({ path: join(root, "src/handler.ts") }));
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
  external: ["node:*"],
  nodePaths: [join(root, "node_modules")],
  logLevel: "silent",
  legalComments: "none",
  minifySyntax: true,
});

/**
 * Bundle a handler module with esbuild into a self-contained worker entry and schema module.
 * @param file the handler's source
 * @param outDir where bundles are written, named by content hash
 * @throws HandlerLoadError with esbuild's messages (file:line:column)
 */
export async function buildHandler(file: string, outDir: string): Promise<BuiltHandler> {
  const root = await packageRoot();
  const abs = resolve(file);
  const spec = JSON.stringify(abs);
  const entries = {
    handler: `import { runIsolate } from ${JSON.stringify(join(root, "src/sandbox/isolate_main.ts"))};\n` +
      `runIsolate(() => import(${spec}));\n`,
    schema: `export { default } from ${spec};\n`,
  };
  let result: esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  try {
    result = await esbuild.build({
      ..._common(root),
      entryPoints: { handler: "outpost-entry:handler", schema: "outpost-entry:schema" },
      outdir: outDir,
      plugins: [_plugin(root, entries)],
    }) as typeof result;
  } catch (e) {
    throw new HandlerLoadError(`Cannot build handler ${basename(file)}: ${_esbuildMessage(e)}`, { cause: e });
  }
  const handlerJs = result.outputFiles.find((f) => f.path.endsWith("handler.js"))!.contents;
  const schemaJs = result.outputFiles.find((f) => f.path.endsWith("schema.js"))!.contents;
  const hash = await sha256Hex(handlerJs);
  const name = basename(abs, extname(abs));
  await mkdir(outDir, { recursive: true });
  const handlerPath = join(outDir, `${name}-${hash.slice(0, 12)}.handler.mjs`);
  const schemaPath = join(outDir, `${name}-${hash.slice(0, 12)}.schema.mjs`);
  await writeFile(handlerPath, handlerJs);
  await writeFile(schemaPath, schemaJs);
  return { name, file: abs, hash: hash.slice(0, 12), handlerUrl: pathToFileURL(handlerPath), schemaUrl: pathToFileURL(schemaPath) };
}

/**
 * Bundle the schema isolate's entry.
 * @returns its file URL
 */
export async function buildValidator(outDir: string): Promise<URL> {
  const root = await packageRoot();
  const entries = {
    validator: `import { runValidator } from ${JSON.stringify(join(root, "src/sandbox/validator_main.ts"))};\nrunValidator();\n`,
  };
  const result = await esbuild.build({
    ..._common(root),
    entryPoints: { validator: "outpost-entry:validator" },
    outdir: outDir,
    plugins: [_plugin(root, entries)],
  }) as esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, "validator.mjs");
  await writeFile(path, result.outputFiles[0]!.contents);
  return pathToFileURL(path);
}

/** SHA-256 of bytes as lowercase hex (WebCrypto). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

function _esbuildMessage(e: unknown): string {
  const errors = (e as { errors?: esbuild.Message[] }).errors;
  if (!errors?.length) return e instanceof Error ? e.message : String(e);
  return errors
    .slice(0, 5)
    .map((m) => (m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ${m.text}` : m.text))
    .join("\n");
}
