/** Building a raw `.wasm` handler: manifest and memory checks, and its worker entry's source. */
import { readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { checkManifest, RAW_WASM_DEFAULT_MEMORY_MB, wasmMemoryDecl } from "./abi.ts";

/**
 * Read `name.wasm` and its manifest `name.json`, check both, and return the worker entry's source.
 * @param file absolute path of the `.wasm` file
 * @param mainPath absolute path of `raw_wasm/main.ts`
 * @returns the entry's source, and the bytes its version is the hash of
 * @throws Error naming what is wrong (no manifest, bad manifest, invalid module, uncapped memory)
 */
export async function buildRawWasmEntry(file: string, mainPath: string): Promise<{ code: string; version: Uint8Array }> {
  const manifestPath = join(dirname(file), `${basename(file, ".wasm")}.json`);
  let text: string;
  try {
    text = await readFile(manifestPath, "utf8");
  } catch {
    throw new Error(`a raw wasm handler needs a manifest ${basename(manifestPath)} beside it (topic, limits)`);
  }
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${basename(manifestPath)}: ${(e as Error).message}`);
  }
  const problems = checkManifest(manifest);
  if (problems.length) throw new Error(`${basename(manifestPath)}: ${problems.join("; ")}`);
  const bytes = new Uint8Array(await readFile(file));
  if (!WebAssembly.validate(bytes)) throw new Error("not a valid WebAssembly module");
  const capPages = ((manifest.memoryMb as number | undefined) ?? RAW_WASM_DEFAULT_MEMORY_MB) * 16;
  const mem = wasmMemoryDecl(bytes);
  if (mem && !mem.imported && (mem.max === undefined || mem.max > capPages)) {
    throw new Error(
      `its memory may grow to ${mem.max === undefined ? "4 GiB (no maximum)" : `${mem.max / 16} MiB`}, over memoryMb ` +
        `${capPages / 16}: declare a maximum (e.g. --max-memory / --maximumMemory) or import env.memory`,
    );
  }
  if (mem && mem.min > capPages) throw new Error(`its memory starts at ${mem.min / 16} MiB, over memoryMb ${capPages / 16}`);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  const b64 = btoa(bin);
  const code = `import { runRawWasm } from ${JSON.stringify(mainPath)};\n` +
    `runRawWasm(${JSON.stringify(b64)}, ${JSON.stringify(manifest)}, ${mem?.min ?? 0});\n`;
  return { code, version: new Uint8Array([...bytes, ...new TextEncoder().encode(text)]) };
}
