/**
 * The QuickJS engine of the wasm tier: its WebAssembly module is compiled once per process and
 * instantiated once per sandbox, each instance with its own linear memory whose `maximum` is the
 * sandbox's hard memory cap. The `.wasm` file comes from the single file itself (embedded,
 * gzip-compressed, by `scripts/build.mjs`), or from the installed
 * `@jitl/quickjs-wasmfile-release-sync` package when running from source; it is never fetched.
 * @module
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import variant from "@jitl/quickjs-wasmfile-release-sync";
import { newQuickJSWASMModuleFromVariant, newVariant, type QuickJSSyncVariant, type QuickJSWASMModule } from "quickjs-emscripten-core";
import { HandlerLoadError } from "../../errors.ts";
import { EMBEDDED } from "../../bundler/embedded.ts";
import { packageRoot } from "../../util/package_root.ts";

/** 64 KiB WebAssembly pages. */
const _PAGE = 65_536;
/** The QuickJS build asks for 16 MiB of linear memory to start with (its data, stack and first heap). */
const _BASE_PAGES = 256;

let _module: Promise<WebAssembly.Module> | undefined;

/**
 * The compiled QuickJS module, shared by every sandbox of the process.
 * @throws HandlerLoadError when the package's `.wasm` file cannot be found or compiled
 */
export function quickjsModule(): Promise<WebAssembly.Module> {
  _module ??= (async () => {
    try {
      if (EMBEDDED?.quickjsWasm) return await WebAssembly.compile(await _gunzip(EMBEDDED.quickjsWasm));
      const require = createRequire(join(await packageRoot(), "package.json"));
      const path = require.resolve("@jitl/quickjs-wasmfile-release-sync/wasm");
      return await WebAssembly.compile(await readFile(path));
    } catch (e) {
      _module = undefined;
      throw new HandlerLoadError(`Cannot load the QuickJS WebAssembly engine of the wasm tier: ${(e as Error).message}`, { cause: e });
    }
  })();
  return _module;
}

/** Base64 of gzip → bytes, with the web's DecompressionStream (Node, Deno and Bun have it). */
async function _gunzip(base64: string): Promise<ArrayBuffer> {
  const bin = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("gzip"));
  return await new Response(stream).arrayBuffer();
}

/** One QuickJS instance and the linear memory it may not grow beyond. */
export interface QuickJSInstance {
  qjs: QuickJSWASMModule;
  memory: WebAssembly.Memory;
  /** Bytes the memory may grow to. */
  maxBytes: number;
}

/**
 * Instantiate QuickJS with its own memory, capped at 16 MiB plus `heapMb`.
 * @param heapMb the sandbox's heap limit (QuickJS's allocator limit is set separately)
 */
export async function newQuickJS(heapMb: number): Promise<QuickJSInstance> {
  const wasmModule = await quickjsModule();
  const maximum = _BASE_PAGES + Math.ceil((heapMb * 1_048_576) / _PAGE);
  const memory = new WebAssembly.Memory({ initial: _BASE_PAGES, maximum });
  // The package's default export is the variant object (its types describe the CommonJS namespace).
  const base = ((variant as unknown as { default?: QuickJSSyncVariant }).default ?? variant) as unknown as QuickJSSyncVariant;
  const qjs = await newQuickJSWASMModuleFromVariant(newVariant(base, { wasmModule, wasmMemory: memory }) as QuickJSSyncVariant);
  return { qjs, memory, maxBytes: maximum * _PAGE };
}
