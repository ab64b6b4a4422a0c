/**
 * The uplink under a byte budget (`--uplink-rate`): nats-server has no rate for a stream source,
 * so with a budget the device forwards OUTBOX itself, with JetStream's own parts, instead of the
 * hub sourcing it. Two durable pull consumers on the local OUTBOX (urgent results, if
 * `--uplink-urgent` names them, and all results) feed JetStream publishes into the hub's streams
 * `URGENT_<device>` and `OUTBOX_<device>` (subjects `uplink.<device>.urgent.…` and
 * `uplink.<device>.bulk.…`), through the leafnode.
 *
 * - Once: each message carries `Nats-Msg-Id: <device>:<OUTBOX sequence>`. At start and after any
 *   failure the forwarder reads the hub stream's last message id, acks locally what the hub holds
 *   already, and goes on from there; the hub's duplicate window catches the rest.
 * - In order: each publish expects the previous id as the stream's last (`Nats-Expected-Last-Msg-Id`),
 *   so a publish that is lost makes the ones after it fail instead of landing out of order.
 * - Urgent first: urgent results go as soon as they are stored; bulk waits while any are pending.
 * - Budget: bulk results spend a token bucket of `rate` bytes a second (subject + payload).
 * A local result is acked only after the hub stored it: nothing is lost while the link is down,
 * and OUTBOX's limits decide how long an outage can be, as with sourcing.
 * @module
 */
import {
  AckPolicy, DeliverPolicy, DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType,
  type Consumer, type JetStreamClient, type JetStreamManager, type JsMsg,
} from "@nats-io/jetstream";
import { headers as natsHeaders, nanos } from "@nats-io/nats-core";
import { STREAMS } from "../broker/streams.ts";
import { streamFilter, SUBJECTS, UPLINK } from "../broker/subjects.ts";
import { TokenBucket } from "../dispatch/token_bucket.ts";
import type { Logger } from "../util/log.ts";
import { HUB_MAX_AGE_MS, hubStreams } from "./attach.ts";

/** Options of {@link Uplink}. */
export interface UplinkOptions {
  device: string;
  /** Bytes a second for bulk results. */
  rate: number;
  /** OUTBOX subject filter of urgent results (`out.alerts.>`): they go first and outside the budget. */
  urgent?: string | undefined;
  jsm: () => JetStreamManager;
  js: () => JetStreamClient;
  hubJs: JetStreamClient;
  hubJsm: () => Promise<JetStreamManager>;
  /** How long the hub keeps what it receives; default 30 days. */
  hubMaxAgeMs?: number | undefined;
  log: Logger;
}

/** What `/readyz` and the hub report say of the uplink. */
export interface UplinkView {
  rate: number;
  urgent: string | null;
  /** Results not yet on the hub, by lane (the consumers' pending counts). */
  pending: { urgent: number; bulk: number };
  sent: { urgent: number; bulk: number; bytes: number };
  lastError: string | null;
}

type _Lane = "urgent" | "bulk";

/** Forwards OUTBOX to the hub under the budget; see the module. */
export class Uplink {
  #o: UplinkOptions;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #bucket: TokenBucket;
  #last: Record<_Lane, string | null | undefined> = { urgent: undefined, bulk: undefined };
  #view: UplinkView;
  #ready = false;

  constructor(o: UplinkOptions) {
    this.#o = o;
    // A second's worth may be saved up: a burst never exceeds the budget by more than that.
    this.#bucket = new TokenBucket(o.rate, o.rate);
    this.#view = { rate: o.rate, urgent: o.urgent ?? null, pending: { urgent: 0, bulk: 0 }, sent: { urgent: 0, bulk: 0, bytes: 0 }, lastError: null };
  }

  async start(): Promise<void> {
    const jsm = this.#o.jsm();
    for (const lane of this.#lanes()) {
      const durable = _durable(lane);
      const cfg = {
        durable_name: durable,
        description: `outpost uplink (${lane}) to the hub`,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: nanos(30_000),
        max_deliver: -1,
        max_ack_pending: 1_000,
        filter_subject: lane === "urgent" ? this.#o.urgent! : streamFilter(SUBJECTS.outbox),
      };
      try {
        await jsm.consumers.info(STREAMS.outbox, durable);
        await jsm.consumers.update(STREAMS.outbox, durable, { filter_subject: cfg.filter_subject });
      } catch (e) {
        if (!(e instanceof JetStreamApiError)) throw e;
        await jsm.consumers.add(STREAMS.outbox, cfg);
      }
    }
    this.#o.log.info(`uplink: forwarding OUTBOX to the hub at ${this.#o.rate} bytes/s${this.#o.urgent ? `, ${this.#o.urgent} first and outside the budget` : ""}`);
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  view(): UplinkView {
    return structuredClone(this.#view);
  }

  #lanes(): _Lane[] {
    return this.#o.urgent ? ["urgent", "bulk"] : ["bulk"];
  }

  async #run(): Promise<void> {
    const js = this.#o.js();
    const consumers = new Map<_Lane, Consumer>();
    for (const lane of this.#lanes()) consumers.set(lane, await js.consumers.get(STREAMS.outbox, _durable(lane)));
    let delay = 250;
    while (!this.#stopped) {
      try {
        if (!this.#ready) await this.#prepare();
        await this.#pending(consumers);
        let moved = 0;
        if (this.#view.pending.urgent > 0) moved += await this.#drain("urgent", consumers.get("urgent")!, 256);
        else if (this.#view.pending.bulk > 0) moved += await this.#drain("bulk", consumers.get("bulk")!, 64);
        if (!moved) await _sleep(100);
        if (this.#view.lastError) this.#o.log.info("uplink: the hub takes results again");
        this.#view.lastError = null;
        delay = 250;
      } catch (e) {
        if (this.#stopped) break;
        const msg = (e as Error).message;
        if (this.#view.lastError !== msg) this.#o.log.warn(`uplink: ${msg}; results wait in OUTBOX, trying again`);
        this.#view.lastError = msg;
        this.#ready = false;
        this.#last = { urgent: undefined, bulk: undefined };
        await _sleep(delay);
        delay = Math.min(delay * 2, 2_000);
      }
    }
  }

  /** The hub's streams (made when missing), and where each lane stands on the hub. */
  async #prepare(): Promise<void> {
    const hjsm = await this.#o.hubJsm();
    const names = hubStreams(this.#o.device);
    for (const lane of this.#lanes()) {
      const name = lane === "urgent" ? names.urgent : names.outbox;
      const subject = `${UPLINK}.${this.#o.device}.${lane}.>`;
      try {
        const i = await hjsm.streams.info(name);
        if (i.config.sources?.length) {
          throw new Error(`the hub's stream ${name} sources this device's OUTBOX (outpost hub attach without a budget); with --uplink-rate the device forwards instead: delete that stream on the hub, or run without --uplink-rate`);
        }
        this.#last[lane] = await this.#lastId(hjsm, name, i.state.last_seq);
      } catch (e) {
        if (!(e instanceof JetStreamApiError) || !/not found/i.test(e.message)) throw e;
        await hjsm.streams.add({
          name, subjects: [subject], retention: RetentionPolicy.Limits, storage: StorageType.File, discard: DiscardPolicy.Old,
          max_age: (this.#o.hubMaxAgeMs ?? HUB_MAX_AGE_MS) * 1e6, duplicate_window: nanos(3_600_000),
          description: `outpost: ${lane === "urgent" ? "the urgent results" : "the results"} of device ${this.#o.device}, forwarded by it under --uplink-rate`,
        });
        this.#last[lane] = null;
      }
    }
    this.#ready = true;
  }

  async #lastId(hjsm: JetStreamManager, stream: string, lastSeq: number): Promise<string | null> {
    if (!lastSeq) return null;
    const m = await hjsm.streams.getMessage(stream, { seq: lastSeq });
    return m?.header?.get("Nats-Msg-Id") || null;
  }

  async #pending(consumers: Map<_Lane, Consumer>): Promise<void> {
    for (const [lane, c] of consumers) {
      const i = await c.info();
      this.#view.pending[lane] = i.num_pending + i.num_ack_pending;
    }
  }

  /** Forward up to `max` results of a lane; returns how many were acked locally. */
  async #drain(lane: _Lane, c: Consumer, max: number): Promise<number> {
    const msgs: JsMsg[] = [];
    for await (const m of await c.fetch({ max_messages: max, expires: 1_000 })) {
      msgs.push(m);
      if (msgs.length >= max) break;
    }
    const hub = hubStreams(this.#o.device);
    const stream = lane === "urgent" ? hub.urgent : hub.outbox;
    const held = this.#heldSeq(lane);
    let done = 0;
    try {
      for (const m of msgs) {
        if (this.#stopped) break;
        if (held !== undefined && m.seq <= held) {
          m.ack(); // on the hub already (a crash between its PubAck and our ack)
          done++;
          continue;
        }
        const id = `${this.#o.device}:${m.seq}`;
        const subject = `${UPLINK}.${this.#o.device}.${lane}.${m.subject}`;
        const size = subject.length + m.data.length;
        if (lane === "bulk") {
          const wait = this.#bucket.waitMs(Math.min(size, this.#bucket.burst));
          if (wait > 0) await _sleep(wait);
          this.#bucket.take(size);
        }
        const h = natsHeaders();
        for (const [k, v] of m.headers ?? []) if (!k.startsWith("Nats-")) for (const x of v) h.append(k, x);
        const last = this.#last[lane];
        await this.#o.hubJs.publish(subject, m.data, {
          msgID: id, headers: h, timeout: 5_000,
          expect: { streamName: stream, ...(last ? { lastMsgID: last } : {}) },
        });
        this.#last[lane] = id;
        m.ack();
        done++;
        this.#view.sent[lane]++;
        this.#view.sent.bytes += size;
      }
    } finally {
      // What was fetched and not forwarded goes back at once, in order.
      for (const m of msgs.slice(done)) m.nak();
    }
    return done;
  }

  /** The OUTBOX sequence of the hub's last message of a lane, when it is one of ours. */
  #heldSeq(lane: _Lane): number | undefined {
    const id = this.#last[lane];
    const p = `${this.#o.device}:`;
    return id?.startsWith(p) ? Number(id.slice(p.length)) : undefined;
  }
}

function _durable(lane: _Lane): string {
  return lane === "urgent" ? "outpost-uplink-urgent" : "outpost-uplink";
}

const _sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
