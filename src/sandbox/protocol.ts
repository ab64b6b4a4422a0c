/** Messages between the host and an isolate: discriminated unions, plain data only. */
import type { ErrorData } from "../errors.ts";
import type { HandlerInfo } from "../sdk/definition.ts";
import type { OutputLimits } from "./budget.ts";

/** One problem with one reading, as ingest reports it. */
export interface ReadingIssue {
  /** Index of the reading in the request. */
  index: number;
  /** Dotted path of the field, empty for the reading itself. */
  path: string;
  message: string;
}

/** One reading of a batch that `handleBatch` reported as failed with `ctx.fail`. */
export interface BatchFailure {
  index: number;
  error: ErrorData;
  permanent: boolean;
}

/** Host → handler isolate. */
export type HostToIsolate =
  | { type: "invoke"; id: number; subject: string; seq: number; attempt: number; data: Uint8Array; sensor?: string; traceparent?: string; tracestate?: string; timeoutMs: number }
  /** Several readings for `handleBatch`; answered by "done" (with per-item `failures`) or "failed". */
  | { type: "invoke-batch"; id: number; items: { subject: string; seq: number; attempt: number; data: Uint8Array; sensor?: string }[]; timeoutMs: number }
  | { type: "reply"; callId: number; error?: ErrorData }
  /** Sent once after "ready": the caps the host enforces, so the isolate stops a flood before posting it. */
  | { type: "limits"; name: string; limits: OutputLimits }
  | { type: "cancel"; id: number };

/** Handler isolate → host. */
export type IsolateToHost =
  | { type: "ready"; info: HandlerInfo }
  | { type: "load-error"; error: ErrorData }
  | { type: "done"; id: number; failures?: BatchFailure[] }
  | { type: "failed"; id: number; error: ErrorData; permanent: boolean }
  /** `id`: the invocation the output belongs to; the host counts it against that message's caps. */
  | { type: "call"; callId: number; id: number; op: "publish" | "emit"; subject: string; data: Uint8Array; delayMs?: number }
  /** `id`: the invocation that logged, 0 outside any. */
  | { type: "log"; id: number; level: "debug" | "info" | "warn" | "error"; message: string }
  | { type: "exit"; code: number };

/** Host → validator isolate. */
export type HostToValidator =
  | { type: "load"; key: string; url: string }
  | { type: "unload"; key: string }
  /** Requests that queued up while the previous batch was out, validated in one round trip. */
  | { type: "validate"; items: { id: number; keys: string[]; readings: unknown[] }[] };

/** Validator isolate → host. */
export type ValidatorToHost =
  /** `plan`: the schema as data, when it is data only (the host then checks its readings itself, see schemas/plan.ts). */
  | { type: "loaded"; key: string; error?: ErrorData; plan?: unknown }
  | { type: "validated"; results: { id: number; issues: ReadingIssue[]; error?: ErrorData }[] };
