import { AckPolicy, DeliverPolicy, JetStreamApiError, type Consumer, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, nanos } from "@nats-io/nats-core";
import type { Broker } from "../broker/connect.ts";
import { STREAMS } from "../broker/streams.ts";
import type { Logger } from "../util/log.ts";
import { DELAYED_FILTER, NOT_BEFORE_HEADER, PRIORITY_HEADER, readingSubject, topicOf } from "../broker/subjects.ts";

/** The durable consumer that holds delayed readings. */
export const SCHEDULER_DURABLE = "outpost-scheduler";
const _DURABLE = SCHEDULER_DURABLE;
// JetStream redelivers a nak'd message after its delay; very long waits are taken in steps.
const _MAX_WAIT_MS = 6 * 3_600_000;

/**
 * Delayed readings: stored at once under `ingest.~delay.<topic>` with a not-before time, held by
 * one durable consumer (nak with the remaining delay, so the server keeps time and a restart
 * changes nothing), and moved to their topic when due. The handler then sees a fresh message.
 */
export class Scheduler {
  #broker: Broker;
  #log: Logger;
  #stopping = false;
  #loop: Promise<void> | undefined;
  /** Readings moved to their topic since start. */
  released = 0;

  constructor(broker: Broker, log: Logger) {
    this.#broker = broker;
    this.#log = log;
  }

  /** Create the durable consumer (idempotent) and start releasing due readings. */
  async start(): Promise<void> {
    const cfg = {
      durable_name: _DURABLE,
      description: "outpost scheduler of delayed readings",
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: DELAYED_FILTER,
      ack_wait: nanos(30_000),
      max_deliver: -1,
      // Waiting readings count as pending acks: allow many.
      max_ack_pending: 1_000_000,
    };
    try {
      await this.#broker.jsm.consumers.info(STREAMS.ingest, _DURABLE);
    } catch (e) {
      if (!(e instanceof JetStreamApiError)) throw e;
      await this.#broker.jsm.consumers.add(STREAMS.ingest, cfg);
    }
    const consumer = await this.#broker.js.consumers.get(STREAMS.ingest, _DURABLE);
    this.#loop = this.#run(consumer);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#loop?.catch(() => {});
  }

  async #run(consumer: Consumer): Promise<void> {
    while (!this.#stopping) {
      try {
        const batch = await consumer.fetch({ max_messages: 256, expires: 1_000 });
        const work: Promise<void>[] = [];
        for await (const m of batch) work.push(this.#one(m));
        await Promise.all(work);
      } catch (e) {
        if (this.#stopping) break;
        this.#log.warn(`scheduler fetch failed: ${(e as Error).message}; retrying in 1 s`);
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  async #one(m: JsMsg): Promise<void> {
    const due = Number(m.headers?.get(NOT_BEFORE_HEADER) ?? 0);
    const wait = due - Date.now();
    if (wait > 0) {
      m.nak(Math.min(wait, _MAX_WAIT_MS));
      return;
    }
    try {
      const h = natsHeaders();
      for (const [k, v] of m.headers ?? []) if (k !== NOT_BEFORE_HEADER && k !== "Nats-Msg-Id") for (const x of v) h.append(k, x);
      h.set("Outpost-Delayed-From", `INGEST:${m.seq}`);
      const subject = readingSubject(topicOf(m.subject), m.headers?.get(PRIORITY_HEADER) === "high");
      // The id makes a crash between this publish and the ack harmless.
      await this.#broker.js.publish(subject, m.data, { msgID: `delayed:${m.seq}`, headers: h });
      m.ack();
      this.released++;
    } catch (e) {
      this.#log.warn(`cannot release delayed reading ${m.seq}: ${(e as Error).message}; retrying`);
      m.nak(1_000);
    }
  }
}
