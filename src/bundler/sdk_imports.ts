/**
 * `import { defineHandler, v } from "outpost/handler"` re-exports valibot as a namespace, which
 * esbuild cannot tree-shake: every handler bundle would carry all of valibot (~80 KB). This
 * rewrites such an import so `v` comes from valibot directly (`import * as v from "valibot"`),
 * which esbuild shakes down to the schema pieces the handler uses.
 */
const _IMPORT = /import\s*\{([^}]*)\}\s*from\s*(["'])outpost\/handler\2\s*;?/g;

/**
 * @param source a handler module's source
 * @returns the source with `v` imported from valibot, or the same text when there is nothing to do
 */
export function directValibotImport(source: string): string {
  return source.replace(_IMPORT, (whole, list: string, quote: string) => {
    const specs = list.split(",").map((x) => x.trim()).filter(Boolean);
    const rest: string[] = [];
    const namespaces: string[] = [];
    for (const spec of specs) {
      const m = /^v(?:\s+as\s+([A-Za-z_$][\w$]*))?$/.exec(spec);
      if (m) namespaces.push(m[1] ?? "v");
      else rest.push(spec);
    }
    if (!namespaces.length) return whole;
    const lines = namespaces.map((n) => `import * as ${n} from ${quote}valibot${quote};`);
    if (rest.length) lines.unshift(`import { ${rest.join(", ")} } from ${quote}outpost/handler${quote};`);
    return lines.join(" ");
  });
}
