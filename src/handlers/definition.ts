/** Checks of a handler definition, shared by `defineHandler` and the isolate that loads it. */

/** Defaults of the policy fields. */
export const DEFAULTS = {
  timeoutMs: 30_000,
  concurrency: 1,
  memoryMb: 128,
  maxAttempts: 5,
  backoffBaseMs: 1_000,
  backoffMaxMs: 60_000,
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
  if (typeof d.handle !== "function") p.push("`handle` must be a function");
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
  if (d.isolation !== undefined && d.isolation !== "worker") p.push(`\`isolation\` must be "worker", got ${JSON.stringify(d.isolation)}`);
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
  if (d.retry !== undefined) {
    const r = d.retry as Record<string, unknown> | null;
    if (!r || typeof r !== "object") p.push("`retry` must be an object");
    else {
      if (r.maxAttempts !== undefined && !_isPosInt(r.maxAttempts, 1_000)) p.push("`retry.maxAttempts` must be an integer from 1 to 1000");
      const b = r.backoff;
      if (b !== undefined && b !== "exponential" && !(Array.isArray(b) && b.length && b.every((x) => typeof x === "number" && x >= 0))) {
        p.push('`retry.backoff` must be "exponential" or a non-empty list of delays in ms');
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
  /** Extra permissions the handler's worker asks for (Deno enforces them; elsewhere workers have all). */
  permissions: Record<string, boolean | string[]> | undefined;
  maxAttempts: number;
  backoff: number[] | "exponential";
}

/**
 * Apply defaults to a definition that passed {@link checkDefinition}.
 * @returns plain data that can cross an isolate boundary
 */
export function handlerInfo(def: Record<string, unknown>): HandlerInfo {
  const retry = (def.retry ?? {}) as { maxAttempts?: number; backoff?: number[] | "exponential" };
  const topic = def.topic as string | undefined;
  return {
    topic,
    subjects: topic !== undefined ? [`ingest.${topic}`] : (def.subjects as string[]).map((s) => `ingest.${s}`),
    hasSchema: def.schema !== undefined,
    idField: def.idField as string | undefined,
    timeoutMs: (def.timeoutMs as number | undefined) ?? DEFAULTS.timeoutMs,
    concurrency: (def.concurrency as number | undefined) ?? DEFAULTS.concurrency,
    memoryMb: (def.memoryMb as number | undefined) ?? DEFAULTS.memoryMb,
    permissions: def.permissions as Record<string, boolean | string[]> | undefined,
    maxAttempts: retry.maxAttempts ?? DEFAULTS.maxAttempts,
    backoff: retry.backoff ? (retry.backoff === "exponential" ? "exponential" : [...retry.backoff]) : "exponential",
  };
}
