/**
 * Stack traces that point at the author's files. Handler bundles are minified into one line, so a
 * frame such as `at handle (file:///…/build/flaky-9e8d.handler.mjs:1:2473)` says nothing to the
 * person who wrote `workers/flaky.ts`. The bundlers write an esbuild source map beside each bundle
 * (`<bundle>.map`); this rewrites the frames of a stack that name a bundle into the original file,
 * line and column. It runs in the host, on the error text, so it is the same on Node, Deno and
 * Bun and in both tiers (the wasm tier's QuickJS reports line and column too): no runtime flag
 * (`--enable-source-maps`) and no engine support is needed.
 * @module
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { originalPositionFor, TraceMap } from "@jridgewell/trace-mapping";
import type { ErrorData } from "../errors.ts";

/** Parsed maps, by bundle path; bounded (a host keeps a handful of versions of each handler). */
const _maps = new Map<string, Promise<_Map | null>>();

/** A parsed map; `sameColumns` when the bundle is a copy of the source with the same lines and columns. */
interface _Map {
  trace: TraceMap;
  sameColumns: boolean;
}
const _MAX_MAPS = 64;

function _map(bundle: string): Promise<_Map | null> {
  let m = _maps.get(bundle);
  if (!m) {
    m = readFile(`${bundle}.map`, "utf8").then((t) => {
      const raw = JSON.parse(t) as { x_outpost_same_columns?: boolean };
      return { trace: new TraceMap(t, pathToFileURL(`${bundle}.map`).href), sameColumns: raw.x_outpost_same_columns === true };
    }, () => null);
    if (_maps.size >= _MAX_MAPS) _maps.delete(_maps.keys().next().value!);
    _maps.set(bundle, m);
  }
  return m;
}

/** `file:///a/b.mjs:1:20` or `/a/b.mjs:1:20` (Bun and QuickJS print paths). */
const _FRAME = /(?:file:\/\/)?(\/[^\s()'"]+?\.m?js):(\d+):(\d+)/g;

function _source(s: string): string {
  return s.startsWith("file:") ? fileURLToPath(s) : s;
}

/**
 * Rewrite the frames of `stack` that point into `bundles` to the original source positions.
 * @param stack a stack trace from any runtime or from QuickJS
 * @param bundles paths (or file URLs) of the bundles whose maps apply
 * @returns the stack with mapped frames; frames it cannot map are left as they are
 */
export async function mapStack(stack: string, bundles: readonly (string | URL)[]): Promise<string> {
  const paths = new Set(bundles.map((b) => (b instanceof URL ? fileURLToPath(b) : _source(b))));
  const hits = [...stack.matchAll(_FRAME)].filter((m) => paths.has(m[1]!));
  if (!hits.length) return stack;
  const maps = new Map<string, _Map | null>();
  for (const h of hits) if (!maps.has(h[1]!)) maps.set(h[1]!, await _map(h[1]!));
  return stack.replace(_FRAME, (whole, path: string, line: string, col: string) => {
    const map = paths.has(path) ? maps.get(path) : null;
    if (!map) return whole;
    // Stack columns are 1-based; source maps' are 0-based.
    const o = originalPositionFor(map.trace, { line: Number(line), column: Math.max(0, Number(col) - 1) });
    if (!o.source || o.line == null) return whole;
    return `${_source(o.source)}:${o.line}:${map.sameColumns ? col : (o.column ?? 0) + 1}`;
  });
}

/**
 * {@link mapStack} over an error's data: its stack, and the first own frame as `at` (for a one-line
 * view such as `/v1/handlers` `lastError`).
 */
export async function mapErrorData(error: ErrorData, bundles: readonly (string | URL)[]): Promise<ErrorData> {
  if (!error.stack) return error;
  const stack = await mapStack(error.stack, bundles);
  const at = _firstOwnFrame(stack);
  return at ? { ...error, stack, at } : { ...error, stack };
}

/** The first frame that names a source file outside the bundles, the SDK and node_modules. */
function _firstOwnFrame(stack: string): string | undefined {
  for (const m of stack.matchAll(/(?:file:\/\/)?(\/[^\s()'"]+?\.[cm]?[jt]sx?):(\d+):(\d+)/g)) {
    const p = m[1]!;
    if (/\.(handler|guest|schema)\.mjs$|\/node_modules\/|\/src\/sdk\/|\/src\/sandbox\//.test(p)) continue;
    return `${p}:${m[2]}:${m[3]}`;
  }
  return undefined;
}
