/**
 * The handler SDK: what a module in `workers/` imports as `outpost/handler`.
 * @module
 */
import type { GenericSchema, GenericSchemaAsync, InferOutput } from "valibot";
import { checkDefinition } from "./definition.ts";
import { SenmlRecord as _SenmlRecord, type SenmlRecord as _SenmlRecordType } from "./senml.ts";
import { isSimple as _isSimple, isTag as _isTag, Simple as _Simple, Tag as _Tag } from "../codec/cbor_data.ts";

export * as v from "valibot";

/**
 * A CBOR tag the runtime gives no JavaScript type of its own (`32` URI, `37` UUID, your own…):
 * a reading carries it as `Tag { tag, value }`, and a Tag you publish is written as that tag.
 */
export const Tag = _Tag;
export type Tag = _Tag;
/** A CBOR simple value other than false, true, null and undefined. */
export const Simple = _Simple;
export type Simple = _Simple;
/** Whether a value is a {@link Tag} (also one made by another copy of this SDK). */
export const isTag = _isTag;
/** Whether a value is a {@link Simple}. */
export const isSimple = _isSimple;

/**
 * The valibot schema of one resolved SenML record (RFC 8428): `n`, absolute `t` in epoch seconds,
 * optional `u`, one of `v`, `vs`, `vb`, `vd` (or a sum `s`), optional `ut`.
 */
export const SenmlRecord = _SenmlRecord;
export type SenmlRecord = _SenmlRecordType;

/**
 * What a CBOR reading can hold, as the handler gets it (docs/cbor.md has the table): maps whose
 * keys are all text are plain objects, any other map is a `Map`; byte strings are `Uint8Array`;
 * integers beyond 2^53 and bignums are `bigint`; tags 0 and 1 are `Date`.
 */
export type CborValue =
  | number | bigint | string | boolean | null | undefined | Uint8Array | Date | Tag | Simple
  | ArrayBufferView | Set<CborValue> | CborValue[] | Map<CborValue, CborValue> | { [key: string]: CborValue };

/**
 * Backoff between attempts: a list of delays in ms (the last repeats), `"exponential"` (1 s doubling
 * to 60 s), or exponential with your own base and cap.
 */
export type Backoff = readonly number[] | "exponential" | { type: "exponential"; baseMs?: number; maxMs?: number };

/** Retry policy of a handler. */
export interface RetryPolicy {
  /** Attempts in all, the first included (default 5). After the last, the message goes to DLQ. */
  maxAttempts?: number;
  /** Delays between attempts (default `"exponential"`: 1 s, 2 s, 4 s … capped at 60 s). */
  backoff?: Backoff;
  /** Scale each delay by a random factor in [1 - jitter, 1 + jitter] (default 0.1). */
  jitter?: number;
}

/** Logging from a handler: `ctx.log("…")` is info; `.debug/.warn/.error` choose the level. */
export interface HandlerLog {
  (...args: unknown[]): void;
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** Raise this (`throw new ctx.Permanent("…")`) for failures a retry cannot fix: straight to DLQ. */
export class PermanentError extends Error {
  override name = "PermanentError";
}

/** Everything a handler can do beyond computing: the host implements it. */
export interface Context {
  /** Stable id of this message: `<stream>:<sequence>`. */
  readonly id: string;
  /** Stream sequence of the message in INGEST. */
  readonly seq: number;
  /** Subject the reading was stored under, e.g. `ingest.temperature`. */
  readonly subject: string;
  /** Topic, the subject without `ingest.`. */
  readonly topic: string;
  /** 1 on the first delivery, 2 on the first retry, … */
  readonly attempt: number;
  /**
   * The id of the sensor that posted the reading, as ingest authenticated it (the sensor
   * registry); undefined when ingest is open, and for readings a handler emitted.
   */
  readonly sensor: string | undefined;
  /**
   * The reading's W3C trace context, this handler's span: what it publishes, emits or
   * dead-letters carries the same trace id. Undefined only for readings stored before tracing.
   */
  readonly trace: { traceId: string; spanId: string; traceparent: string; tracestate?: string } | undefined;
  /** Aborted when the message times out or the host shuts down. */
  readonly signal: AbortSignal;
  /** Store `value` (as CBOR) in the OUTBOX stream under `out.<subject>`; resolves once stored. */
  publish(subject: string, value: unknown): Promise<void>;
  /**
   * Feed `value` back into ingest under `topic` (chaining handlers); resolves once stored. With
   * `delayMs` it is stored now and handled no earlier than that (a restart does not change it).
   */
  emit(topic: string, value: unknown, opts?: { delayMs?: number }): Promise<void>;
  log: HandlerLog;
  /** The error class that skips retries. */
  readonly Permanent: typeof PermanentError;
}

/** What `handleBatch` gets besides the readings. `attempt`, `id`, `seq`, `subject` are the first item's. */
export interface BatchContext extends Context {
  /** One entry per reading, in order. */
  readonly items: readonly { id: string; seq: number; subject: string; attempt: number; sensor: string | undefined }[];
  /**
   * Report that reading `index` failed: it alone is retried (or dead-lettered after its last
   * attempt, or at once for a `Permanent` error); the others are acked.
   */
  fail(index: number, error: unknown): void;
}

/** A schema usable for a topic: any valibot schema (sync or async). */
export type Schema = GenericSchema | GenericSchemaAsync;

/** The definition a handler module exports by default. */
export interface HandlerDefinition<S extends Schema | undefined = Schema | undefined> {
  /** Consume `ingest.<topic>`. One of `topic` or `subjects` is required. */
  topic?: string;
  /** Consume these subjects under `ingest.` instead (wildcards allowed). */
  subjects?: readonly string[];
  /** Readings that do not match are refused at ingest with 400, before anything is stored. */
  schema?: S;
  /** Field whose value becomes the reading's idempotency key in batches. */
  idField?: string;
  /**
   * Keep this topic's readings in a recording as well (a stream of their own, oldest out first,
   * bounded by `maxBytes`, default 16 MiB, and `maxAge` in ms, default 7 days), to export them
   * (`outpost record export`) and replay them against a new version (`outpost replay`).
   */
  record?: true | { maxBytes?: number; maxAge?: number };
  /**
   * A SenML body (`application/senml+json` or `application/senml+cbor`, RFC 8428) is resolved
   * (base name, base time, base unit…), then stored as one reading per record (`"records"`, the
   * default: validation, `ctx` and retries per record) or as one reading, the array of resolved
   * records (`"pack"`). Validate a record with `SenmlRecord`.
   */
  senml?: "records" | "pack";
  /**
   * Isolation tier: `"worker"` (default; a worker isolate, V8 JIT) or `"wasm"` (QuickJS compiled to
   * WebAssembly: hard memory, CPU and stack caps, nothing but `ctx` and standard JavaScript).
   */
  isolation?: "worker" | "wasm";
  /** Time one message may take (default 30 000). The isolate is restarted when it overruns. */
  timeoutMs?: number;
  /** Messages handled at once (default 1). */
  concurrency?: number;
  /**
   * Heap limit of the isolate in MiB. Worker tier: default 128, enforced on Node, not by Deno or Bun
   * workers. Wasm tier: default 16, enforced everywhere; the sandbox's linear memory is capped at
   * this plus 16 MiB.
   */
  memoryMb?: number;
  /** Wasm tier only: native stack of the sandbox in KiB, 16 to 256 (default 192); bounds recursion. */
  stackKb?: number;
  /** Wasm tier only: CPU time one message may spend running in the sandbox, in ms (default 1000). */
  cpuMs?: number;
  /**
   * What the handler's worker may reach beyond `ctx`. Deno starts workers with every permission
   * denied and grants exactly these. Everywhere, `env` names the environment variables the worker
   * gets (none otherwise). On Node workers read only the handler builds and may use the network;
   * Bun workers can reach everything the host can but its environment.
   * @example `{ net: ["api.example.com"], env: ["API_KEY"] }`
   */
  permissions?: { net?: boolean | string[]; read?: boolean | string[]; write?: boolean | string[]; env?: boolean | string[]; run?: boolean | string[] };
  retry?: RetryPolicy;
  /** At most `perSecond` readings a second on average (`burst` at once, default one second's worth). */
  rateLimit?: { perSecond: number; burst?: number };
  /**
   * Two lanes: readings posted with `Outpost-Priority: high` (or whose `field` is true, "high" or
   * a positive number) are dispatched before normal ones, `weight` to 1 (default 4) under load.
   */
  priority?: true | { weight?: number; field?: string };
  /**
   * Skip a reading whose key (the values of these fields, dotted paths allowed) was handled within
   * `ttlMs` (default 24 h), even when it was sent again long after the stream's duplicate window.
   */
  dedupe?: { key: string | readonly string[]; ttlMs?: number };
  /** Hand `handleBatch` up to `size` readings at once, waiting at most `maxWaitMs` (default 1000) to fill a batch. */
  batch?: { size: number; maxWaitMs?: number };
  /** Handle one reading; resolve to ack, throw to retry. Required unless `batch` is set. */
  handle?(reading: S extends Schema ? InferOutput<S> : unknown, ctx: Context): void | Promise<void>;
  /** With `batch`: handle the readings together; throw to retry them all, `ctx.fail(i, e)` to retry one. */
  handleBatch?(readings: (S extends Schema ? InferOutput<S> : unknown)[], ctx: BatchContext): void | Promise<void>;
}

/**
 * Declare a handler; the module's default export.
 * @param def topic, schema, policy and the `handle` function
 * @returns the same definition, checked
 * @throws TypeError naming every problem of the definition
 * @example
 * ```ts
 * import { defineHandler, v } from "outpost/handler";
 * export default defineHandler({
 *   topic: "temperature",
 *   schema: v.object({ sensor: v.string(), celsius: v.number() }),
 *   async handle(r, ctx) { if (r.celsius > 80) await ctx.publish("alerts", r); },
 * });
 * ```
 */
export function defineHandler<S extends Schema | undefined = undefined>(def: HandlerDefinition<S>): HandlerDefinition<S> {
  const problems = checkDefinition(def);
  if (problems.length) throw new TypeError(`Invalid handler definition: ${problems.join("; ")}`);
  return def;
}
