/**
 * Data-only schemas checked in the host. Most handler schemas are plain valibot: objects of
 * numbers and strings with bounds. The schema isolate describes such a schema as data (a plan:
 * types, entries, bounds, fixed messages, nothing callable) when it loads it; the host rebuilds it
 * from that data with its own valibot, the same version the isolate runs, and checks readings of
 * that topic in-process, without the round trip to the isolate (two process boundaries on Node).
 *
 * No handler code runs in the host: a plan is checked field by field before anything is built
 * from it, and anything the plan cannot express (a function: `check`, `transform`, `custom`, a
 * message function, a computed default; a regex, which could take a reading forever in the host's
 * thread; an async schema) leaves the schema in the isolate, as before.
 * @module
 */
import * as v from "valibot";
import type { ReadingIssue } from "../sandbox/protocol.ts";

type _Prim = string | number | boolean | null;
/** A validation action of a pipe. */
export interface PlanAction {
  t: (typeof _ACTIONS)[number];
  requirement?: number;
  message?: string;
}
/** A schema described as data. */
export type SchemaPlan =
  | { t: "object" | "loose_object" | "strict_object"; entries: Record<string, SchemaPlan>; message?: string; pipe?: PlanAction[] }
  | { t: (typeof _LEAVES)[number]; message?: string; pipe?: PlanAction[] }
  | { t: "literal"; literal: string | number | boolean; message?: string }
  | { t: "picklist"; options: (string | number)[]; message?: string }
  | { t: "optional" | "nullable" | "nullish"; wrapped: SchemaPlan; default?: _Prim }
  | { t: "array"; item: SchemaPlan; message?: string; pipe?: PlanAction[] };

const _LEAVES = ["number", "string", "boolean", "bigint", "null", "any", "unknown"] as const;
const _ACTIONS = ["min_value", "max_value", "min_length", "max_length", "length", "integer", "finite", "safe_integer"] as const;
/** Past these a plan is not worth carrying across (and the isolate keeps the schema). */
const _MAX_NODES = 2_000;
const _MAX_DEPTH = 32;
const _MAX_MESSAGE = 500;

/**
 * Describe a loaded schema as a plan (in the schema isolate), or undefined when it is not data only.
 * @param schema the handler's `schema` (a valibot schema)
 */
export function describeSchema(schema: unknown): SchemaPlan | undefined {
  let nodes = 0;
  const msg = (m: unknown): { message?: string } | undefined =>
    m === undefined ? {} : typeof m === "string" && m.length <= _MAX_MESSAGE ? { message: m } : undefined;
  const pipe = (p: unknown): { pipe?: PlanAction[] } | undefined => {
    if (p === undefined) return {};
    if (!Array.isArray(p) || p.length < 2) return undefined;
    const out: PlanAction[] = [];
    // p[0] is the schema itself; the rest are its actions.
    for (const a of p.slice(1) as Record<string, unknown>[]) {
      if (a?.kind !== "validation" || !(_ACTIONS as readonly unknown[]).includes(a.type) || a.async) return undefined;
      const m = msg(a.message);
      if (!m) return undefined;
      const takes = a.type !== "integer" && a.type !== "finite" && a.type !== "safe_integer";
      if (takes && (typeof a.requirement !== "number" || Number.isNaN(a.requirement))) return undefined;
      out.push({ t: a.type as PlanAction["t"], ...(takes ? { requirement: a.requirement as number } : {}), ...m });
    }
    return { pipe: out };
  };
  const walk = (s: unknown, depth: number): SchemaPlan | undefined => {
    if (++nodes > _MAX_NODES || depth > _MAX_DEPTH || typeof s !== "object" || s === null) return undefined;
    const o = s as Record<string, unknown>;
    if (o.kind !== "schema" || o.async !== false) return undefined;
    if ((o["~standard"] as { vendor?: unknown } | undefined)?.vendor !== "valibot") return undefined;
    const t = o.type;
    if (t === "optional" || t === "nullable" || t === "nullish") {
      if (o.pipe !== undefined) return undefined;
      const wrapped = walk(o.wrapped, depth + 1);
      if (!wrapped) return undefined;
      const d = o.default;
      if (d !== undefined && d !== null && typeof d !== "string" && typeof d !== "number" && typeof d !== "boolean") return undefined;
      return { t, wrapped, ...(d !== undefined ? { default: d } : {}) };
    }
    const m = msg(o.message);
    if (!m) return undefined;
    if (t === "literal" || t === "picklist") {
      if (o.pipe !== undefined) return undefined;
      if (t === "literal") {
        const l = o.literal;
        return typeof l === "string" || typeof l === "boolean" || (typeof l === "number" && !Number.isNaN(l)) ? { t, literal: l, ...m } : undefined;
      }
      const opts = o.options;
      if (!Array.isArray(opts) || opts.length > _MAX_NODES || !opts.every((x) => typeof x === "string" || (typeof x === "number" && !Number.isNaN(x)))) return undefined;
      nodes += opts.length;
      return { t, options: [...opts] as (string | number)[], ...m };
    }
    const p = pipe(o.pipe);
    if (!p) return undefined;
    if (t === "object" || t === "loose_object" || t === "strict_object") {
      if (typeof o.entries !== "object" || o.entries === null) return undefined;
      const entries: Record<string, SchemaPlan> = {};
      for (const [k, e] of Object.entries(o.entries)) {
        const d = walk(e, depth + 1);
        if (!d) return undefined;
        entries[k] = d;
      }
      return { t, entries, ...m, ...p };
    }
    if (t === "array") {
      const item = walk(o.item, depth + 1);
      return item ? { t, item, ...m, ...p } : undefined;
    }
    if ((_LEAVES as readonly unknown[]).includes(t)) return { t: t as (typeof _LEAVES)[number], ...m, ...p };
    return undefined;
  };
  return walk(schema, 0);
}

/** A schema the host checks readings with. */
export type HostCheck = (reading: unknown) => { issues?: readonly v.BaseIssue<unknown>[] | undefined };

/**
 * Build a plan (in the host) with the host's valibot, checking every field on the way: the plan
 * came from the isolate, so it is data to distrust.
 * @returns the check, or undefined when the plan is not one this module writes
 */
export function compilePlan(plan: unknown): HostCheck | undefined {
  let nodes = 0;
  const str = (x: unknown) => x === undefined || (typeof x === "string" && x.length <= _MAX_MESSAGE);
  const num = (x: unknown) => typeof x === "number" && !Number.isNaN(x);
  const action = (a: unknown): v.PipeAction<any, any, any> | undefined => {
    const x = a as PlanAction;
    if (typeof x !== "object" || x === null || !str(x.message)) return undefined;
    const m = x.message;
    switch (x.t) {
      case "integer": return v.integer(m);
      case "finite": return v.finite(m);
      case "safe_integer": return v.safeInteger(m);
      case "min_value": return num(x.requirement) ? v.minValue(x.requirement!, m) : undefined;
      case "max_value": return num(x.requirement) ? v.maxValue(x.requirement!, m) : undefined;
      case "min_length": return num(x.requirement) ? v.minLength(x.requirement!, m) : undefined;
      case "max_length": return num(x.requirement) ? v.maxLength(x.requirement!, m) : undefined;
      case "length": return num(x.requirement) ? v.length(x.requirement!, m) : undefined;
      default: return undefined;
    }
  };
  const build = (p: unknown, depth: number): v.GenericSchema | undefined => {
    if (++nodes > _MAX_NODES || depth > _MAX_DEPTH || typeof p !== "object" || p === null) return undefined;
    const x = p as Record<string, unknown>;
    const m = x.message as string | undefined;
    if (!str(m)) return undefined;
    let base: v.GenericSchema | undefined;
    switch (x.t) {
      case "optional": case "nullable": case "nullish": {
        const w = build(x.wrapped, depth + 1);
        const d = x.default;
        if (!w || (d !== undefined && d !== null && typeof d !== "string" && typeof d !== "boolean" && !num(d))) return undefined;
        if (x.t === "optional") return ("default" in x ? v.optional(w, d as never) : v.optional(w)) as v.GenericSchema;
        if (x.t === "nullable") return ("default" in x ? v.nullable(w, d as never) : v.nullable(w)) as v.GenericSchema;
        return ("default" in x ? v.nullish(w, d as never) : v.nullish(w)) as v.GenericSchema;
      }
      case "literal": {
        const l = x.literal;
        return typeof l === "string" || typeof l === "boolean" || num(l) ? v.literal(l as string, m) : undefined;
      }
      case "picklist": {
        const o = x.options;
        if (!Array.isArray(o) || o.length > _MAX_NODES || !o.every((y) => typeof y === "string" || num(y))) return undefined;
        return v.picklist(o as string[], m);
      }
      case "object": case "loose_object": case "strict_object": {
        if (typeof x.entries !== "object" || x.entries === null || Array.isArray(x.entries)) return undefined;
        const entries: Record<string, v.GenericSchema> = {};
        for (const [k, e] of Object.entries(x.entries)) {
          const b = build(e, depth + 1);
          if (!b) return undefined;
          entries[k] = b;
        }
        base = x.t === "object" ? v.object(entries, m) : x.t === "loose_object" ? v.looseObject(entries, m) : v.strictObject(entries, m);
        break;
      }
      case "array": {
        const item = build(x.item, depth + 1);
        if (!item) return undefined;
        base = v.array(item, m);
        break;
      }
      case "number": base = v.number(m); break;
      case "string": base = v.string(m); break;
      case "boolean": base = v.boolean(m); break;
      case "bigint": base = v.bigint(m); break;
      case "null": base = v.null(m); break;
      case "any": base = v.any(); break;
      case "unknown": base = v.unknown(); break;
      default: return undefined;
    }
    if (x.pipe === undefined) return base;
    if (!Array.isArray(x.pipe) || x.pipe.length > 64) return undefined;
    const actions = x.pipe.map(action);
    if (actions.some((a) => !a)) return undefined;
    return v.pipe(base, ...(actions as [v.PipeAction<any, any, any>])) as v.GenericSchema;
  };
  const schema = build(plan, 0);
  if (!schema) return undefined;
  return (reading) => v.safeParse(schema, reading);
}

type _Issue = { message: string; path?: readonly ({ key: PropertyKey } | PropertyKey)[] };

/**
 * Check readings against several schemas (all must pass) and collect the issues, each problem
 * once: several handlers of one topic often share a schema. The schema isolate and the host both
 * answer with this.
 */
export async function collectIssues(checks: ((v: unknown) => unknown)[], readings: unknown[]): Promise<ReadingIssue[]> {
  const issues: ReadingIssue[] = [];
  const seen = new Set<string>();
  for (const check of checks) {
    for (let i = 0; i < readings.length; i++) {
      let r = check(readings[i]) as { issues?: _Issue[] } | Promise<{ issues?: _Issue[] }>;
      if (r instanceof Promise) r = await r;
      for (const issue of r.issues ?? []) {
        const found = { index: i, path: issuePath(issue.path), message: issue.message };
        const id = `${found.index}\u0000${found.path}\u0000${found.message}`;
        if (!seen.has(id)) issues.push(found);
        seen.add(id);
      }
    }
  }
  return issues;
}

/** `a.b.0` of an issue's path. */
export function issuePath(path: _Issue["path"]): string {
  if (!path) return "";
  return path.map((p) => String(typeof p === "object" && p !== null && "key" in p ? p.key : p)).join(".");
}
