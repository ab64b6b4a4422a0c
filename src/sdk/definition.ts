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

const _isPosInt = (n: unknown, max: number) => typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= max;

/**
 * List what is wrong with a definition.
 * @param def the module's default export
 * @returns human-readable problems; empty when the definition is valid
 */
export function checkDefinition(def: unknown): string[] {
  if (!def || typeof def !== "object") {
    return [`the default export must be defineHandler({...}), got ${def === null ? "null" : typeof def}`];
  }
  const d = def as Record<string, unknown>;
  const p: string[] = [];
  if (d.batch !== undefined) {
    if (typeof d.handleBatch !== "function") p.push("with `batch`, `handleBatch(readings, ctx)` must be a function");
  } else if (typeof d.handle !== "function") p.push("`handle` must be a function");
  if (d.topic === undefined && d.subjects === undefined) p.push("`topic` (or `subjects`) is required");
  if (d.topic !== undefined && !isTopic(d.topic)) {
    p.push(`\`topic\` must be dot-separated letters, digits, _ or -, got ${JSON.stringify(d.topic)}`);
  }
  if (d.subjects !== undefined) {
    if (!Array.isArray(d.subjects) || !d.subjects.length || !d.subjects.every((s) => typeof s === "string" && _SUBJECT.test(s))) {
      p.push("`subjects` must be a non-empty list of subjects (wildcards * and > allowed)");
    }
  }
  if (d.schema !== undefined) {
    const std = (d.schema as { "~standard"?: { vendor?: unknown; validate?: unknown } } | null)?.["~standard"];
    if (!std || std.vendor !== "valibot" || typeof std.validate !== "function") {
      p.push("`schema` must be a valibot schema (use `v` from \"outpost/handler\")");
    }
  }
  if (d.idField !== undefined && typeof d.idField !== "string") p.push("`idField` must be a string");
  if (d.isolation !== undefined && d.isolation !== "worker" && d.isolation !== "wasm") {
    p.push(`\`isolation\` must be "worker" or "wasm", got ${JSON.stringify(d.isolation)}`);
  }
  if (d.stackKb !== undefined && (d.isolation !== "wasm" || !_isPosInt(d.stackKb, WASM_DEFAULTS.maxStackKb) || (d.stackKb as number) < 16)) {
    p.push(`\`stackKb\` needs isolation "wasm" and must be an integer from 16 to ${WASM_DEFAULTS.maxStackKb}`);
  }
  if (d.cpuMs !== undefined && (d.isolation !== "wasm" || !_isPosInt(d.cpuMs, WASM_DEFAULTS.maxCpuMs))) {
    p.push(`\`cpuMs\` needs isolation "wasm" and must be an integer from 1 to ${WASM_DEFAULTS.maxCpuMs}`);
  }
  if (d.isolation === "wasm" && d.batch !== undefined) p.push("`batch` is not available with isolation \"wasm\" (yet)");
  if (d.isolation === "wasm" && d.permissions !== undefined) p.push("`permissions` cannot be granted with isolation \"wasm\" (it can reach only ctx)");
  if (d.timeoutMs !== undefined && !_isPosInt(d.timeoutMs, 3_600_000)) p.push("`timeoutMs` must be an integer from 1 to 3600000");
  if (d.concurrency !== undefined && !_isPosInt(d.concurrency, 1_000)) p.push("`concurrency` must be an integer from 1 to 1000");
  if (d.memoryMb !== undefined && !_isPosInt(d.memoryMb, 65_536)) p.push("`memoryMb` must be a positive integer");
  if (d.permissions !== undefined) {
    const perms = d.permissions as Record<string, unknown> | null;
    const kinds = ["net", "read", "write", "env", "run"];
    if (!perms || typeof perms !== "object" || Array.isArray(perms)) p.push("`permissions` must be an object");
    else {
      for (const [k, val] of Object.entries(perms)) {
        const ok = typeof val === "boolean" || (Array.isArray(val) && val.every((x) => typeof x === "string"));
        if (!kinds.includes(k)) p.push(`\`permissions.${k}\` is not a permission (use ${kinds.join(", ")})`);
        else if (!ok) p.push(`\`permissions.${k}\` must be true, false or a list of strings`);
      }
    }
  }
  p.push(..._checkQueuePolicy(d));
  if (d.retry !== undefined) {
    const r = d.retry as Record<string, unknown> | null;
    if (!r || typeof r !== "object") p.push("`retry` must be an object");
    else {
      if (r.maxAttempts !== undefined && !_isPosInt(r.maxAttempts, 1_000)) p.push("`retry.maxAttempts` must be an integer from 1 to 1000");
      const b = r.backoff as unknown;
      const ms = (x: unknown) => x === undefined || (typeof x === "number" && x >= 0 && x <= 86_400_000);
      const expo = b && typeof b === "object" && !Array.isArray(b) && (b as { type?: unknown }).type === "exponential" &&
        ms((b as { baseMs?: unknown }).baseMs) && ms((b as { maxMs?: unknown }).maxMs);
      if (b !== undefined && b !== "exponential" && !expo && !(Array.isArray(b) && b.length && b.every((x) => ms(x)))) {
        p.push('`retry.backoff` must be "exponential", { type: "exponential", baseMs, maxMs } or a non-empty list of delays in ms');
      }
      if (r.jitter !== undefined && !(typeof r.jitter === "number" && r.jitter >= 0 && r.jitter <= 1)) {
        p.push("`retry.jitter` must be a fraction from 0 to 1");
      }
    }
  }
  return p;
}

/** The policy of a handler with defaults applied, as the host needs it. */
export interface HandlerInfo {
  topic: string | undefined;
  subjects: string[];
  hasSchema: boolean;
  idField: string | undefined;
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

type _Obj = Record<string, unknown>;
const _isObj = (v: unknown): v is _Obj => !!v && typeof v === "object" && !Array.isArray(v);
const _num = (v: unknown, min: number, max: number) => typeof v === "number" && Number.isFinite(v) && v >= min && v <= max;

/** Checks of `rateLimit`, `priority`, `dedupe` and `batch`. */
function _checkQueuePolicy(d: _Obj): string[] {
  const p: string[] = [];
  const r = d.rateLimit;
  if (r !== undefined && !(_isObj(r) && _num(r.perSecond, 0.001, 1e6) && (r.burst === undefined || _num(r.burst, 1, 1e6)))) {
    p.push("`rateLimit` must be { perSecond: > 0, burst?: >= 1 }");
  }
  const pr = d.priority;
  if (pr !== undefined && pr !== true && !(_isObj(pr) && (pr.weight === undefined || _num(pr.weight, 1, 1000)) && (pr.field === undefined || typeof pr.field === "string"))) {
    p.push("`priority` must be true or { weight?: 1..1000, field?: string }");
  }
  const dd = d.dedupe;
  const keyOk = (k: unknown) => (typeof k === "string" && k.length > 0) || (Array.isArray(k) && k.length > 0 && k.every((x) => typeof x === "string" && x.length > 0));
  if (dd !== undefined && !(_isObj(dd) && keyOk(dd.key) && (dd.ttlMs === undefined || _num(dd.ttlMs, 1, 365 * 86_400_000)))) {
    p.push("`dedupe` must be { key: field name or list of field names (dotted paths), ttlMs?: number }");
  }
  const b = d.batch;
  if (b !== undefined && !(_isObj(b) && Number.isInteger(b.size) && _num(b.size, 1, 10_000) && (b.maxWaitMs === undefined || _num(b.maxWaitMs, 0, 3_600_000)))) {
    p.push("`batch` must be { size: integer 1..10000, maxWaitMs?: number }");
  }
  return p;
}

/** `rateLimit`, `priority`, `dedupe` and `batch` with defaults applied. */
function _queuePolicy(d: _Obj): Pick<HandlerInfo, "rateLimit" | "priority" | "dedupe" | "batch"> {
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
