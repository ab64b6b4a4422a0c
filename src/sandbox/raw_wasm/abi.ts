/**
 * Raw `.wasm` handlers: the manifest beside the module, and what the module may import and must
 * export. The ABI (also in docs/wasm-tier.md):
 *
 * - imports: nothing, except optionally `env.memory` (then the host provides a memory capped at
 *   `memoryMb`) and `env.abort(i32, i32, i32, i32)` (AssemblyScript's; it traps). A module that
 *   defines its own memory must declare a maximum of at most `memoryMb`.
 * - exports: `memory` (unless imported), `alloc(len: i32) -> i32`, and
 *   `handle(ptr: i32, len: i32) -> i64`: it receives the reading's CBOR bytes at `ptr` and returns
 *   `(outPtr << 32) | outLen`, the CBOR of an array of output records (`0` for none):
 *   `{"publish": subject, "value": v}`, `{"emit": topic, "value": v}`, `{"log": level, "message": s}`,
 *   `{"error": message, "permanent"?: true}` (fails the message). Optional `init()` runs once.
 * - state in the module's memory lives until the sandbox is rebuilt (a trap or a timeout rebuilds it).
 * @module
 */
import { checkDefinition } from "../../sdk/definition.ts";

/** Default memory cap of a raw wasm handler in MiB. */
export const RAW_WASM_DEFAULT_MEMORY_MB = 16;

/** Imports a raw module may have, `module.name` → kind. */
export const RAW_WASM_IMPORTS: Record<string, string> = { "env.memory": "memory", "env.abort": "function" };

const _FIELDS = new Set(["topic", "subjects", "idField", "timeoutMs", "memoryMb", "retry"]);

/**
 * List what is wrong with a manifest (`name.json` beside `name.wasm`).
 * @returns problems; empty when valid
 */
export function checkManifest(m: unknown): string[] {
  if (!m || typeof m !== "object" || Array.isArray(m)) return ["the manifest must be a JSON object"];
  const p = Object.keys(m).filter((k) => !_FIELDS.has(k)).map((k) => `\`${k}\` is not a manifest field (use ${[..._FIELDS].join(", ")})`);
  return [...p, ...checkDefinition({ ...m, handle() {}, isolation: "wasm" })];
}

/** Memory limits a module declares, in 64 KiB pages. */
export interface WasmMemoryDecl {
  imported: boolean;
  min: number;
  max: number | undefined;
}

/**
 * Read the memory a module imports or defines from its binary (import and memory sections).
 * @returns undefined when the module has no memory
 * @throws RangeError on a malformed binary
 */
export function wasmMemoryDecl(b: Uint8Array): WasmMemoryDecl | undefined {
  let p = 8;
  const byte = () => {
    if (p >= b.length) throw new RangeError("truncated WebAssembly binary");
    return b[p++]!;
  };
  const leb = () => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const x = byte();
      v += (x & 0x7f) * 2 ** shift;
      if (!(x & 0x80)) return v;
    }
    throw new RangeError("bad LEB128 in WebAssembly binary");
  };
  const limits = (imported: boolean): WasmMemoryDecl => {
    const flags = byte();
    if (flags & 0x04) throw new RangeError("64-bit memories are not supported");
    const min = leb();
    return { imported, min, max: flags & 1 ? leb() : undefined };
  };
  const skipName = () => {
    const n = leb();
    p += n;
  };
  while (p < b.length) {
    const id = byte();
    const size = leb();
    const end = p + size;
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        skipName();
        skipName();
        const kind = byte();
        if (kind === 2) return limits(true);
        if (kind === 0 || kind === 4) (kind === 4 && byte(), leb());
        else if (kind === 1) (byte(), limits(false));
        else if (kind === 3) (byte(), byte());
        else throw new RangeError(`unknown import kind ${kind}`);
      }
    } else if (id === 5) {
      return leb() > 0 ? limits(false) : undefined;
    }
    p = end;
  }
  return undefined;
}
