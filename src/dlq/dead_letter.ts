import { headers } from "@nats-io/nats-core";
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { encodeCbor } from "../codec/cbor.ts";
import type { ErrorData } from "../errors.ts";
import { dlqSubject } from "../broker/subjects.ts";

/** What a dead-lettered message keeps (stored as CBOR in the DLQ stream). */
export interface DeadLetter {
  handler: string;
  version: string;
  /** Original subject and INGEST sequence. */
  subject: string;
  seq: number;
  attempts: number;
  error: ErrorData;
  firstError: ErrorData | undefined;
  /** When the reading was stored, and when it was dead-lettered. */
  storedAt: Date;
  failedAt: Date;
  /** The reading's CBOR bytes, unchanged. */
  payload: Uint8Array;
  /** The authenticated sensor that posted it (kept on replay). */
  sensor?: string | undefined;
  /** The reading's W3C trace context as stored (kept on replay). */
  traceparent?: string | undefined;
}

/**
 * Store a failed message in DLQ (deduplicated by handler and sequence, so a crash between
 * this and the ack cannot store it twice), then the caller acks the original.
 */
export async function deadLetter(js: JetStreamClient, m: JsMsg, dl: DeadLetter): Promise<void> {
  const h = headers();
  h.set("Outpost-Handler", dl.handler);
  h.set("Outpost-Subject", dl.subject);
  h.set("Outpost-Seq", String(dl.seq));
  h.set("Outpost-Error", `${dl.error.name}: ${dl.error.message}`.slice(0, 512).replace(/[\r\n]+/g, " "));
  if (dl.traceparent) h.set("traceparent", dl.traceparent);
  await js.publish(dlqSubject(dl.handler), encodeCbor(dl), { msgID: `dlq:${dl.handler}:${m.seq}`, headers: h });
}
