/** Which JavaScript runtime this process runs on. The only module that asks. */
export type RuntimeName = "node" | "deno" | "bun";

interface _Globals {
  Deno?: { version: { deno: string } };
  Bun?: { version: string };
  process?: { versions?: { node?: string } };
}

const _g = globalThis as unknown as _Globals;

/** The runtime this process runs on. */
export const runtime: RuntimeName = _g.Deno ? "deno" : _g.Bun ? "bun" : "node";

/**
 * The runtime's version string, e.g. `node 20.20.2`.
 * @returns name and version separated by a space
 */
export function runtimeVersion(): string {
  if (runtime === "deno") return `deno ${_g.Deno?.version.deno ?? "?"}`;
  if (runtime === "bun") return `bun ${_g.Bun?.version ?? "?"}`;
  return `node ${_g.process?.versions?.node ?? "?"}`;
}
