import { headers as natsHeaders } from "@nats-io/nats-core";
import type { JetStreamClient, JetStreamManager, MsgRequest, StoredMsg } from "@nats-io/jetstream";
import { STREAMS } from "../broker/streams.ts";
import { dlqSubject, ingestSubject, SENSOR_HEADER } from "../broker/subjects.ts";
import { decodeCbor } from "../codec/cbor.ts";
import type { DeadLetter } from "./dead_letter.ts";

/** A dead letter as the admin API shows it: its DLQ sequence is its id. */
export interface DlqEntry extends Omit<DeadLetter, "payload"> {
  id: number;
  /** The reading, decoded. */
  payload: unknown;
}

/** Filters and paging of {@link DlqStore.list}. */
export interface DlqQuery {
  handler?: string | undefined;
  topic?: string | undefined;
  /** Return entries with an id above this (the previous page's `next`). */
  after?: number | undefined;
  limit?: number | undefined;
}

/** Reads, replays and deletes dead letters in the DLQ stream. */
export class DlqStore {
  #jsm: JetStreamManager;
  #js: JetStreamClient;

  constructor(jsm: JetStreamManager, js: JetStreamClient) {
    this.#jsm = jsm;
    this.#js = js;
  }

  /**
   * One page of dead letters, oldest first.
   * @returns the entries and `next` (the `after` of the following page, or null at the end)
   */
  async list(q: DlqQuery): Promise<{ entries: DlqEntry[]; next: number | null }> {
    const limit = Math.min(Math.max(q.limit ?? 50, 1), 500);
    const filter = dlqSubject(q.handler);
    const entries: DlqEntry[] = [];
    let seq = (q.after ?? 0) + 1;
    for (;;) {
      const m = await this.#next(seq, filter);
      if (!m) return { entries, next: null };
      seq = m.seq + 1;
      const e = _entry(m);
      if (q.topic && e.subject !== ingestSubject(q.topic)) continue;
      entries.push(e);
      if (entries.length === limit) return { entries, next: m.seq };
    }
  }

  /** One dead letter by id, or undefined. */
  async get(id: number): Promise<DlqEntry | undefined> {
    try {
      const m = await this.#jsm.streams.getMessage(STREAMS.dlq, { seq: id });
      return m ? _entry(m) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Store the reading again under its original subject (a new message: attempts start at 1), then
   * delete the dead letter, so it is replayed once. The new message's id guards against a double
   * replay within the stream's duplicate window.
   * @returns the new INGEST sequence, or undefined when there is no such entry
   */
  async replay(id: number): Promise<number | undefined> {
    let m: StoredMsg | null;
    try {
      m = await this.#jsm.streams.getMessage(STREAMS.dlq, { seq: id });
    } catch {
      return undefined;
    }
    if (!m) return undefined;
    const dl = decodeCbor(m.data) as DeadLetter;
    const h = natsHeaders();
    h.set("Outpost-Replay-Of", `DLQ:${id}`);
    if (dl.sensor) h.set(SENSOR_HEADER, dl.sensor);
    if (dl.traceparent) h.set("traceparent", dl.traceparent);
    const ack = await this.#js.publish(dl.subject, dl.payload, { msgID: `replay:dlq:${id}`, headers: h });
    await this.#jsm.streams.deleteMessage(STREAMS.dlq, id).catch(() => false);
    return ack.seq;
  }

  /** Delete one dead letter; false when there was none. */
  async delete(id: number): Promise<boolean> {
    try {
      return await this.#jsm.streams.deleteMessage(STREAMS.dlq, id);
    } catch {
      return false;
    }
  }

  async #next(seq: number, filter: string): Promise<StoredMsg | null> {
    try {
      // STREAM.MSG.GET with next_by_subj: the first message at or after seq on the subject.
      return await this.#jsm.streams.getMessage(STREAMS.dlq, { seq, next_by_subj: filter } as unknown as MsgRequest);
    } catch {
      return null;
    }
  }
}

function _entry(m: StoredMsg): DlqEntry {
  const dl = decodeCbor(m.data) as DeadLetter;
  let payload: unknown;
  try {
    payload = decodeCbor(dl.payload);
  } catch {
    payload = dl.payload;
  }
  return { ...dl, id: m.seq, payload };
}
