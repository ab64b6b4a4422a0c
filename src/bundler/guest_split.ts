/**
 * A handler's wasm-tier guest split in two: the prelude (guest bootstrap and SDK, the same for
 * every handler of one Outpost build) and the handler's part, which imports the prelude. A spare
 * sandbox evaluates the prelude ahead of need, so starting a handler in the wasm tier evaluates
 * only its own code (see `src/sandbox/quickjs/spare.ts`). The self-contained guest bundle is still
 * written beside it: the schema sandbox loads that one, and so does a sandbox without a prelude.
 * @module
 */
import type * as Esbuild from "esbuild";

/** The module name the prelude is evaluated under in a sandbox, and the guest part imports. */
export const PRELUDE_MODULE = "outpost-sdk:prelude";

/** The guest part's entry: the prelude's bootstrap serves the handler module's default export. */
export function guestPartEntry(handlerPath: string): string {
  return `import { serveGuest } from ${JSON.stringify(PRELUDE_MODULE)};\nimport * as mod from ${JSON.stringify(handlerPath)};\nserveGuest(mod.default);\n`;
}

/** What the prelude exports: the guest bootstrap and the SDK's values but `v` (test/unit/guest_split.test.ts keeps it true). */
export const PRELUDE_EXPORTS = ["serveGuest", "defineHandler", "isSimple", "isTag", "PermanentError", "SenmlRecord", "Simple", "Tag"] as const;

/**
 * The plugin (placed before the build's own) that keeps the prelude out of a guest part:
 * `outpost/handler` is the prelude, imported. The handler's own `import { v }` is rewritten to
 * valibot before (`directValibotImport`), so its schemas are shaken as in the self-contained guest.
 */
export const guestPartPlugin: Esbuild.Plugin = {
  name: "outpost-guest-part",
  setup(b) {
    b.onResolve({ filter: /^(outpost-sdk:prelude|outpost\/handler)$/ }, () => ({ path: PRELUDE_MODULE, external: true }));
  },
};

/**
 * Whether a built guest part imports from the prelude only names it exports, by name. A namespace
 * import (`import * as sdk from "outpost/handler"`, or `v` reached through one) or a name the
 * prelude lacks would fail to link in the sandbox: such a handler keeps the self-contained guest.
 */
export function partLinks(code: string): boolean {
  const known = new Set<string>(PRELUDE_EXPORTS);
  const from = new RegExp(`import\\s*([^;]*?)\\s*from\\s*["']${PRELUDE_MODULE}["']`, "g");
  let any = false;
  for (const m of code.matchAll(from)) {
    any = true;
    const clause = m[1]!.trim();
    const named = /^\{([^}]*)\}$/.exec(clause);
    if (!named) return false;
    for (const spec of named[1]!.split(",").map((x) => x.trim()).filter(Boolean)) {
      if (!known.has(spec.split(/\s+as\s+/)[0]!)) return false;
    }
  }
  return any && !/\bimport\s*\(\s*["']outpost-sdk:prelude["']/.test(code);
}
