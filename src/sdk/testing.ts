/**
 * Test a handler in your own tests, with no host and no broker: `outpost/testing`.
 *
 * ```ts
 * import { test } from "node:test";          // or Deno.test, or bun:test
 * import assert from "node:assert/strict";
 * import { invoke } from "outpost/testing";
 * import handler from "./temperature-alert.ts";
 *
 * test("a hot reading raises an alert", async () => {
 *   const r = await invoke(handler, { sensor: "t1", celsius: 91 });
 *   assert.equal(r.outcome, "ack");
 *   assert.deepEqual(r.published, [{ subject: "alerts", value: { sensor: "t1", celsius: 91 } }]);
 * });
 * ```
 *
 * `invoke` runs the definition in the calling process, the way the host's isolate runs it: the
 * reading goes through CBOR (what a handler receives is what the wire carries), is checked by the
 * schema, `handle` gets a real `ctx`, and a failure is judged by the handler's retry policy. It is
 * for fast unit tests; `outpost test` runs the built handler in its real isolate.
 * @module
 */
import { decodeCbor, encodeCbor } from "../codec/cbor.ts";
import { backoffDelay } from "../dispatch/backoff.ts";
import { toErrorData, type ErrorData } from "../errors.ts";
import { isPublishSubject } from "../broker/subjects.ts";
import { makeContext, makeHandlerLog, type LogLevel } from "../sandbox/context.ts";
import { checkDefinition, handlerInfo, isTopic, type HandlerInfo } from "./definition.ts";
import type { BatchContext, HandlerDefinition, Schema } from "./handler.ts";

/** How one invocation ended, as the host would act on it. */
export type Outcome =
  /** The reading fails the schema: ingest answers 400 and stores nothing; `handle` is not called. */
  | "rejected"
  /** `handle` resolved: the message is acked. */
  | "ack"
  /** `handle` threw and attempts remain: redelivered after `retryInMs`. */
  | "retry"
  /** `handle` threw `ctx.Permanent`, or on its last attempt: the message goes to the DLQ. */
  | "dead-letter";

/** A `ctx.publish` the handler made. */
export interface Published {
  /** As the handler gave it (stored in OUTBOX as `out.<subject>`). */
  subject: string;
  /** The value after a CBOR round trip: what a consumer of OUTBOX reads. */
  value: unknown;
}

/** A `ctx.emit` the handler made. */
export interface Emitted {
  topic: string;
  value: unknown;
  delayMs?: number;
}

/** What {@link invoke} returns. */
export interface InvokeResult {
  outcome: Outcome;
  /** Schema issues when `outcome` is `"rejected"` (dotted path, message). */
  issues: { path: string; message: string }[];
  published: Published[];
  emitted: Emitted[];
  logs: { level: LogLevel; message: string }[];
  /** What the handler threw (`retry`, `dead-letter`). */
  error?: ErrorData;
  /** With `retry`: the delay before the next attempt, without jitter (the host scales it by ±`jitter`). */
  retryInMs?: number;
  /** The attempt this was (1 is the first delivery). */
  attempt: number;
  /** The handler's policy with defaults applied. */
  policy: HandlerInfo;
}

/** Options of {@link invoke}. */
export interface InvokeOptions {
  /** The delivery attempt to simulate (default 1); the last one (`retry.maxAttempts`) dead-letters on failure. */
  attempt?: number;
  /** The subject the reading arrives on (default `ingest.<topic>`, or the first of `subjects`). */
  subject?: string;
  /** Stream sequence (default 1): `ctx.seq`, and `ctx.id` is `INGEST:<seq>`. */
  seq?: number;
  /** The authenticated sensor that posted the reading: `ctx.sensor` (default undefined: open ingest). */
  sensor?: string;
  /**
   * A fixed clock: while `handle` runs, `Date.now()` and `new Date()` say this time. A test that
   * uses it should not run handlers concurrently in the same process.
   */
  now?: Date | number;
  /**
   * Make outputs fail as a broker that is down would: `true` fails every `ctx.publish` and
   * `ctx.emit`, a function decides per output (return true or an Error to fail it).
   */
  failPublish?: boolean | ((op: "publish" | "emit", subject: string, value: unknown) => boolean | Error);
  /** Abort the handler's `ctx.signal` after this many ms (default: the definition's `timeoutMs`). */
  timeoutMs?: number;
}

/**
 * Run one reading through a handler definition, as the host would, and report what happened.
 * @param def the handler module's default export (`defineHandler({...})`)
 * @param reading the reading, as a sensor would send it
 * @param options attempt, clock, failing outputs
 * @returns the outcome, outputs, logs and error; it never throws for what the handler does
 * @throws TypeError when `def` is not a valid definition
 */
export async function invoke<S extends Schema | undefined>(def: HandlerDefinition<S>, reading: unknown, options: InvokeOptions = {}): Promise<InvokeResult> {
  const problems = checkDefinition(def);
  if (problems.length) throw new TypeError(`Invalid handler definition: ${problems.join("; ")}`);
  const policy = handlerInfo(def as unknown as Record<string, unknown>);
  const attempt = options.attempt ?? 1;
  const result: InvokeResult = { outcome: "ack", issues: [], published: [], emitted: [], logs: [], attempt, policy };
  // What the handler gets is what CBOR carries, as through ingest and the stream.
  const wire = decodeCbor(encodeCbor(reading));
  let value: unknown = wire;
  if (def.schema) {
    const r = (await def.schema["~standard"].validate(wire)) as { value?: unknown; issues?: readonly _Issue[] };
    if (r.issues) {
      result.outcome = "rejected";
      result.issues = r.issues.map((i) => ({ path: _path(i), message: i.message }));
      return result;
    }
    value = r.value;
  }
  const subject = options.subject ?? policy.subjects[0]!.replace(/\.>$|\.\*/g, ".test");
  const log = makeHandlerLog((level, message) => result.logs.push({ level, message }));
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error("handler timed out")), options.timeoutMs ?? policy.timeoutMs);
  const ctx = makeContext({ subject, seq: options.seq ?? 1, attempt, sensor: options.sensor }, ac.signal, {
    log,
    call: async (op, target, v, delayMs) => {
      const failed = typeof options.failPublish === "function" ? options.failPublish(op, target, v) : options.failPublish;
      if (failed) throw failed instanceof Error ? failed : new Error(`ctx.${op} failed: the broker is unavailable (failPublish)`);
      if (op === "publish") {
        if (!isPublishSubject(target)) throw new TypeError(`ctx.publish: invalid subject ${JSON.stringify(target)} (dot-separated tokens, no wildcards)`);
        result.published.push({ subject: target, value: decodeCbor(encodeCbor(v)) });
      } else {
        if (!isTopic(target)) throw new TypeError(`ctx.emit: invalid topic ${JSON.stringify(target)}`);
        result.emitted.push(delayMs === undefined ? { topic: target, value: decodeCbor(encodeCbor(v)) } : { topic: target, value: decodeCbor(encodeCbor(v)), delayMs });
      }
    },
  });
  const restoreClock = options.now === undefined ? undefined : _freezeClock(options.now);
  try {
    if (def.handle) await def.handle(value as never, ctx);
    else if (def.handleBatch) {
      let failure: unknown;
      const bctx: BatchContext = { ...ctx, items: [{ id: ctx.id, seq: ctx.seq, subject, attempt, sensor: options.sensor }], fail: (_i, e) => (failure ??= e) };
      await def.handleBatch([value as never], bctx);
      if (failure !== undefined) throw failure;
    }
  } catch (e) {
    const error = toErrorData(e);
    result.error = error;
    Object.assign(result, judgeFailure(error.name === "PermanentError", attempt, policy));
  } finally {
    clearTimeout(timer);
    restoreClock?.();
  }
  return result;
}

/**
 * What the host does with a failed attempt, as its dispatcher decides it: a permanent error or the
 * last attempt goes to the DLQ, anything else is retried after the policy's delay (without jitter).
 */
export function judgeFailure(permanent: boolean, attempt: number, policy: Pick<HandlerInfo, "maxAttempts" | "backoff">): { outcome: "retry" | "dead-letter"; retryInMs?: number } {
  if (permanent || attempt >= policy.maxAttempts) return { outcome: "dead-letter" };
  return { outcome: "retry", retryInMs: backoffDelay(policy.backoff, attempt, 0) };
}

type _Issue = { message: string; path?: readonly ({ key: PropertyKey } | PropertyKey)[] };

function _path(i: _Issue): string {
  return (i.path ?? []).map((p) => String(typeof p === "object" && p !== null && "key" in p ? p.key : p)).join(".");
}

/** Replace `Date` so that `Date.now()` and `new Date()` say `at`; returns the undo. */
function _freezeClock(at: Date | number): () => void {
  const t = typeof at === "number" ? at : at.getTime();
  const Real = globalThis.Date;
  class FixedDate extends Real {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(t);
      else super(...(args as [string]));
    }
    static override now(): number {
      return t;
    }
  }
  globalThis.Date = FixedDate as DateConstructor;
  return () => {
    globalThis.Date = Real;
  };
}
