import type { ErrorData } from "../errors.ts";
import type { BatchFailure } from "./protocol.ts";
import type { HandlerInfo } from "../sdk/definition.ts";
import type { WorkerPermissions } from "../runtime/worker.ts";
import type { OutputLimits } from "./budget.ts";

/** A handler's failure, as reported from inside the isolate (errors are data here). */
export class HandlerError extends Error {
  override name = "HandlerError";
  /** The error the handler threw, as data. */
  readonly data: ErrorData;
  /** Whether the handler asked to skip retries. */
  readonly permanent: boolean;
  constructor(data: ErrorData, permanent: boolean) {
    super(`${data.name}: ${data.message}`);
    this.data = data;
    this.permanent = permanent;
  }
}


/** One message to handle. */
export interface Invocation {
  subject: string;
  seq: number;
  attempt: number;
  data: Uint8Array;
  /** The authenticated sensor that posted the reading (`ctx.sensor`), when ingest knew it. */
  sensor?: string | undefined;
  /** The handler's span: W3C `traceparent` (and `tracestate`), for `ctx.trace`. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** The host's answer to `ctx.publish` / `ctx.emit`. */
export type CallHandler = (op: "publish" | "emit", subject: string, data: Uint8Array, opts?: { delayMs?: number }, inv?: Invocation) => Promise<void>;

/** What every isolate kind is given. */
export interface IsolateOptions {
  name: string;
  /** The handler bundle (worker entry) built by `buildHandler`. */
  url: URL;
  memoryMb?: number | undefined;
  /** Permissions granted to the isolate where the runtime can restrict it. */
  permissions?: WorkerPermissions | undefined;
  onCall: CallHandler;
  /** A log line of the handler; `inv` is the message it belongs to, when it belongs to one. */
  onLog: (level: "debug" | "info" | "warn" | "error", message: string, inv?: Invocation) => void;
  /** Called once if the isolate dies on its own after it was ready (reason "timeout" after a timeout). */
  onCrash: (reason: string) => void;
  /** How long loading may take. */
  loadTimeoutMs?: number;
  /** Caps on what one message may send out (default {@link DEFAULT_OUTPUT_LIMITS}). */
  limits?: OutputLimits | undefined;
}

/**
 * A handler running in an isolate; the dispatcher sees only this. Errors it rejects with:
 * `HandlerError` (the handler threw; data, with `permanent`), `HandlerTimeoutError`,
 * `IsolateCrashedError`; `start` rejects with `HandlerLoadError`.
 */
export interface Isolate {
  /** Load the handler; resolves with its policy. */
  start(): Promise<HandlerInfo>;
  /** Handle one message within `timeoutMs`. */
  invoke(inv: Invocation, timeoutMs: number): Promise<void>;
  /** Handle several messages with `handleBatch`; resolves with the readings it reported failed. Absent where batches are not supported. */
  invokeBatch?(items: Invocation[], timeoutMs: number): Promise<BatchFailure[]>;
  /** Abort every running handler's signal (shutdown). */
  cancelAll(): void;
  /** Stop; pending invocations fail with IsolateCrashedError. */
  terminate(): Promise<void>;
  readonly inFlight: number;
  /** Whether `memoryMb` is really enforced. */
  readonly heapLimitEnforced: boolean;
  /** Whether the handler runs without ambient authority (network, files, env, subprocesses). */
  readonly sandboxed: boolean;
  /** Bytes of memory the isolate holds now, where the runtime can tell. */
  memory?(): { bytes: number } | undefined;
}
