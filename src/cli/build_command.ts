import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../util/package_root.ts";
import { ConfigError } from "../errors.ts";
import { writeOut } from "../runtime/process.ts";
import { parseFlags } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

/** `outpost build [--out FILE]`: write the single-file runtime (needs the source tree and esbuild). */
export async function buildCommand(args: string[]): Promise<number> {
  const { values: f } = parseFlags(args, {}, COMMANDS.find((c) => c.name === "build")!.flags);
  let root: string;
  try {
    root = await packageRoot();
  } catch {
    throw new ConfigError("outpost build needs the source tree (src/, scripts/build.mjs and esbuild): run it in a clone of the repository");
  }
  const mod = (await import(pathToFileURL(join(root, "scripts/build.mjs")).href)) as {
    buildSingleFile(o: { out?: string }): Promise<{ out: string; bytes: number; sdkBytes: number; wasmBytes: number }>;
  };
  const r = await mod.buildSingleFile(f.out ? { out: String(f.out) } : {});
  writeOut(`${r.out}: ${r.bytes} bytes (of which ${r.sdkBytes} bytes embedded handler SDK, ${r.wasmBytes} bytes the wasm tier's engine)\n`);
  return 0;
}
