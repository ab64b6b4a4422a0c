import * as v from "valibot";
import { ingestSubject } from "../broker/subjects.ts";

/** Checks of a handler definition, shared by `defineHandler` and the isolate that loads it. */

/** Defaults of the policy fields. */
export const DEFAULTS = {
  timeoutMs: 30_000,
  concurrency: 1,
  memoryMb: 128,
  maxAttempts: 5,
  backoffBaseMs: 1_000,
  backoffMaxMs: 60_000,
  jitter: 0.1,
  priorityWeight: 4,
  dedupeTtlMs: 24 * 3_600_000,
  batchMaxWaitMs: 1_000,
} as const;

/** Defaults and bounds of the `isolation: "wasm"` tier's limits. */
export const WASM_DEFAULTS = {
  /** Heap of the sandbox (QuickJS allocations); its linear memory is capped at this plus 16 MiB. */
  memoryMb: 16,
  /** Native stack QuickJS may use; wasm frames run on the host thread's stack, so it stays small. */
  stackKb: 192,
  maxStackKb: 256,
  /** CPU time one message may spend running in the sandbox (the host thread runs it). */
  cpuMs: 1_000,
  maxCpuMs: 60_000,
} as const;

const _TOPIC = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const _SUBJECT = /^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.>)?$|^>$/;

/** Whether `t` is a valid topic name (dot-separated tokens of letters, digits, `_`, `-`). */
export function isTopic(t: unknown): t is string {
  return typeof t === "string" && t.length <= 200 && _TOPIC.test(t);
}

const _int = (min: number, max: number, message: string) => v.pipe(v.number(message), v.integer(message), v.minValue(min, message), v.maxValue(max, message));
const _ms = v.pipe(v.number(), v.minValue(0), v.maxValue(86_400_000));
const _PERMISSIONS = ["net", "read", "write", "env", "run"] as const;
const _BACKOFF = '`retry.backoff` must be "exponential", { type: "exponential", baseMs, maxMs } or a non-empty list of delays in ms';
const _isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === "object" && !Array.isArray(x);

/**
 * The definition's fields, one valibot schema: every field's own rule with the sentence a handler
 * author reads. Rules between fields are {@link _RELATIONS}.
 */
const _FIELDS = v.looseObject({
  topic: v.optional(v.custom<string>(isTopic, (i) => `\`topic\` must be dot-separated letters, digits, _ or -, got ${JSON.stringify(i.input)}`)),
  subjects: v.optional(v.message(v.pipe(v.array(v.pipe(v.string(), v.regex(_SUBJECT))), v.nonEmpty()),
    "`subjects` must be a non-empty list of subjects (wildcards * and > allowed)")),
  schema: v.optional(v.custom((x) => {
    const std = (x as { "~standard"?: { vendor?: unknown; validate?: unknown } } | null)?.["~standard"];
    return !!std && std.vendor === "valibot" && typeof std.validate === "function";
  }, '`schema` must be a valibot schema (use `v` from "outpost/handler")')),
  idField: v.optional(v.string("`idField` must be a string")),
  record: v.optional(v.message(v.union([
    v.literal(true),
    v.object({
      maxBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1024 * 1024), v.maxValue(2 ** 40))),
      maxAge: v.optional(v.pipe(v.number(), v.minValue(1_000), v.maxValue(366 * 86_400_000))),
    }),
  ]), "`record` must be true or { maxBytes?: bytes (at least 1 MiB), maxAge?: ms (at least 1000) }")),
  senml: v.optional(v.picklist(["records", "pack"], (i) => `\`senml\` must be "records" or "pack", got ${JSON.stringify(i.input)}`)),
  isolation: v.optional(v.picklist(["worker", "wasm"], (i) => `\`isolation\` must be "worker" or "wasm", got ${JSON.stringify(i.input)}`)),
  timeoutMs: v.optional(_int(1, 3_600_000, "`timeoutMs` must be an integer from 1 to 3600000")),
  concurrency: v.optional(_int(1, 1_000, "`concurrency` must be an integer from 1 to 1000")),
  memoryMb: v.optional(_int(1, 65_536, "`memoryMb` must be a positive integer")),
  permissions: v.optional(v.custom(_isObject, "`permissions` must be an object")),
  rateLimit: v.optional(v.message(v.object({
    perSecond: v.pipe(v.number(), v.minValue(0.001), v.maxValue(1e6)),
    burst: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(1e6))),
  }), "`rateLimit` must be { perSecond: > 0, burst?: >= 1 }")),
  priority: v.optional(v.message(v.union([
    v.literal(true),
    v.object({ weight: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(1000))), field: v.optional(v.string()) }),
  ]), "`priority` must be true or { weight?: 1..1000, field?: string }")),
  dedupe: v.optional(v.message(v.object({
    key: v.union([v.pipe(v.string(), v.nonEmpty()), v.pipe(v.array(v.pipe(v.string(), v.nonEmpty())), v.nonEmpty())]),
    ttlMs: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(365 * 86_400_000))),
  }), "`dedupe` must be { key: field name or list of field names (dotted paths), ttlMs?: number }")),
  batch: v.optional(v.message(v.object({
    size: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000)),
    maxWaitMs: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(3_600_000))),
  }), "`batch` must be { size: integer 1..10000, maxWaitMs?: number }")),
  retry: v.optional(v.object({
    maxAttempts: v.optional(_int(1, 1_000, "`retry.maxAttempts` must be an integer from 1 to 1000")),
    backoff: v.optional(v.message(v.union([
      v.literal("exponential"),
      v.object({ type: v.literal("exponential"), baseMs: v.optional(_ms), maxMs: v.optional(_ms) }),
      v.pipe(v.array(_ms), v.nonEmpty()),
    ]), _BACKOFF)),
    jitter: v.optional(v.message(v.pipe(v.number(), v.minValue(0), v.maxValue(1)), "`retry.jitter` must be a fraction from 0 to 1")),
  }, "`retry` must be an object")),
});

type _Def = Record<string, unknown>;

/** Rules between fields, in the order a person reads them. */
const _RELATIONS: [(d: _Def) => boolean, string | ((d: _Def) => string)][] = [
  [(d) => d.batch === undefined || typeof d.handleBatch === "function", "with `batch`, `handleBatch(readings, ctx)` must be a function"],
  [(d) => d.batch !== undefined || typeof d.handle === "function", "`handle` must be a function"],
  [(d) => d.topic !== undefined || d.subjects !== undefined, "`topic` (or `subjects`) is required"],
];
const _WASM_RELATIONS: [(d: _Def) => boolean, string][] = [
  [(d) => d.stackKb === undefined || (d.isolation === "wasm" && Number.isInteger(d.stackKb) && (d.stackKb as number) >= 16 && (d.stackKb as number) <= WASM_DEFAULTS.maxStackKb),
    `\`stackKb\` needs isolation "wasm" and must be an integer from 16 to ${WASM_DEFAULTS.maxStackKb}`],
  [(d) => d.cpuMs === undefined || (d.isolation === "wasm" && Number.isInteger(d.cpuMs) && (d.cpuMs as number) >= 1 && (d.cpuMs as number) <= WASM_DEFAULTS.maxCpuMs),
    `\`cpuMs\` needs isolation "wasm" and must be an integer from 1 to ${WASM_DEFAULTS.maxCpuMs}`],
  [(d) => !(d.isolation === "wasm" && d.batch !== undefined), "`batch` is not available with isolation \"wasm\" (yet)"],
  [(d) => !(d.isolation === "wasm" && d.permissions !== undefined), "`permissions` cannot be granted with isolation \"wasm\" (it can reach only ctx)"],
];

/**
 * List what is wrong with a definition.
 * @param def the module's default export
 * @returns human-readable problems; empty when the definition is valid
 */
export function checkDefinition(def: unknown): string[] {
  if (!_isObject(def)) return [`the default export must be defineHandler({...}), got ${def === null ? "null" : typeof def}`];
  const p = _RELATIONS.filter(([ok]) => !ok(def)).map(([, m]) => (typeof m === "string" ? m : m(def)));
  const r = v.safeParse(_FIELDS, def);
  if (!r.success) for (const issue of r.issues) if (!p.includes(issue.message)) p.push(issue.message);
  if (_isObject(def.permissions)) p.push(..._permissionProblems(def.permissions));
  p.push(..._WASM_RELATIONS.filter(([ok]) => !ok(def)).map(([, m]) => m));
  return p;
}

const _PERMISSION = v.union([v.boolean(), v.array(v.string())]);

/** Each key of `permissions`: a known permission, granted with true, false or a list of strings. */
function _permissionProblems(perms: Record<string, unknown>): string[] {
  return Object.entries(perms).flatMap(([k, val]) => {
    if (!(_PERMISSIONS as readonly string[]).includes(k)) return [`\`permissions.${k}\` is not a permission (use ${_PERMISSIONS.join(", ")})`];
    return v.is(_PERMISSION, val) ? [] : [`\`permissions.${k}\` must be true, false or a list of strings`];
  });
}

/** The policy of a handler with defaults applied, as the host needs it. */
export interface HandlerInfo {
  topic: string | undefined;
  subjects: string[];
  hasSchema: boolean;
  idField: string | undefined;
  /** Keep the topic's readings in a recording too (`outpost record export`, `outpost replay`); bounds with defaults applied. */
  record: { maxBytes: number; maxAgeMs: number } | undefined;
  /** SenML bodies (`application/senml+json`, `+cbor`): each resolved record a reading, or the pack as one. */
  senml: "records" | "pack" | undefined;
  timeoutMs: number;
  concurrency: number;
  memoryMb: number;
  /** The isolate kind. */
  isolation: "worker" | "wasm";
  /** Wasm tier: native stack limit of the sandbox in KiB (undefined for the worker tier). */
  stackKb: number | undefined;
  /** Wasm tier: CPU time per message in ms (undefined for the worker tier). */
  cpuMs: number | undefined;
  /** Extra permissions the handler's worker asks for (Deno enforces them; elsewhere workers have all). */
  permissions: Record<string, boolean | string[]> | undefined;
  maxAttempts: number;
  /** Delays between attempts: a list (the last repeats) or exponential from `baseMs` capped at `maxMs`. */
  backoff: number[] | { baseMs: number; maxMs: number };
  /** Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]. */
  jitter: number;
  /** Token bucket in front of `handle`: at most `perSecond` on average, `burst` at once. */
  rateLimit: { perSecond: number; burst: number } | undefined;
  /** Two lanes: high-priority readings get `weight` slots for each one of normal readings. */
  priority: { weight: number; field: string | undefined } | undefined;
  /** Skip a reading whose key (the values of `fields`) was handled within `ttlMs`. */
  dedupe: { ttlMs: number; fields: string[] } | undefined;
  /** Hand the handler arrays of up to `size` readings, waiting at most `maxWaitMs` to fill one. */
  batch: { size: number; maxWaitMs: number } | undefined;
}

/**
 * Apply defaults to a definition that passed {@link checkDefinition}.
 * @returns plain data that can cross an isolate boundary
 */
export function handlerInfo(def: Record<string, unknown>): HandlerInfo {
  const retry = (def.retry ?? {}) as {
    maxAttempts?: number;
    backoff?: number[] | "exponential" | { baseMs?: number; maxMs?: number };
    jitter?: number;
  };
  const b = retry.backoff ?? "exponential";
  const topic = def.topic as string | undefined;
  const wasm = def.isolation === "wasm";
  return {
    topic,
    subjects: topic !== undefined ? [ingestSubject(topic)] : (def.subjects as string[]).map(ingestSubject),
    hasSchema: def.schema !== undefined,
    idField: def.idField as string | undefined,
    senml: def.senml as "records" | "pack" | undefined,
    record: _record(def.record),
    timeoutMs: (def.timeoutMs as number | undefined) ?? DEFAULTS.timeoutMs,
    concurrency: (def.concurrency as number | undefined) ?? DEFAULTS.concurrency,
    memoryMb: (def.memoryMb as number | undefined) ?? (wasm ? WASM_DEFAULTS.memoryMb : DEFAULTS.memoryMb),
    isolation: wasm ? "wasm" : "worker",
    stackKb: wasm ? ((def.stackKb as number | undefined) ?? WASM_DEFAULTS.stackKb) : undefined,
    cpuMs: wasm ? ((def.cpuMs as number | undefined) ?? WASM_DEFAULTS.cpuMs) : undefined,
    permissions: def.permissions as Record<string, boolean | string[]> | undefined,
    maxAttempts: retry.maxAttempts ?? DEFAULTS.maxAttempts,
    backoff: Array.isArray(b)
      ? [...b]
      : b === "exponential"
      ? { baseMs: DEFAULTS.backoffBaseMs, maxMs: DEFAULTS.backoffMaxMs }
      : { baseMs: b.baseMs ?? DEFAULTS.backoffBaseMs, maxMs: b.maxMs ?? DEFAULTS.backoffMaxMs },
    jitter: retry.jitter ?? DEFAULTS.jitter,
    ..._queuePolicy(def),
  };
}


/** `record` with defaults: 16 MiB, 7 days. */
function _record(r: unknown): HandlerInfo["record"] {
  if (r === undefined) return undefined;
  const o = r === true ? {} : (r as { maxBytes?: number; maxAge?: number });
  return { maxBytes: o.maxBytes ?? 16 * 1024 * 1024, maxAgeMs: o.maxAge ?? 7 * 86_400_000 };
}

/** `rateLimit`, `priority`, `dedupe` and `batch` with defaults applied. */
function _queuePolicy(d: _Def): Pick<HandlerInfo, "rateLimit" | "priority" | "dedupe" | "batch"> {
  const r = d.rateLimit as { perSecond: number; burst?: number } | undefined;
  const pr = d.priority as true | { weight?: number; field?: string } | undefined;
  const dd = d.dedupe as { key: string | string[]; ttlMs?: number } | undefined;
  const b = d.batch as { size: number; maxWaitMs?: number } | undefined;
  return {
    rateLimit: r ? { perSecond: r.perSecond, burst: r.burst ?? Math.max(1, Math.ceil(r.perSecond)) } : undefined,
    priority: pr ? { weight: (pr === true ? undefined : pr.weight) ?? DEFAULTS.priorityWeight, field: pr === true ? undefined : pr.field } : undefined,
    dedupe: dd ? { ttlMs: dd.ttlMs ?? DEFAULTS.dedupeTtlMs, fields: Array.isArray(dd.key) ? [...dd.key] : [dd.key] } : undefined,
    batch: b ? { size: b.size, maxWaitMs: b.maxWaitMs ?? DEFAULTS.batchMaxWaitMs } : undefined,
  };
}
