import type { Broker } from "../broker/connect.ts";
import { STREAMS } from "../broker/streams.ts";
import type { HandlerRunner } from "./runner.ts";
import { SCHEDULER_DURABLE } from "./scheduler.ts";

/** An ingest refusal: too much waiting (429) or the stream nearly full (507). */
export interface Pressure {
  status: 429 | 507;
  error: "backlog" | "storage_full" | "delayed_backlog";
  message: string;
  retryAfterS: number;
}

interface _Sample {
  at: number;
  backlog: number;
  acked: number;
  /** Acks per second, smoothed. */
  rate: number;
}

const _STALE_MS = 250;

/**
 * Decides when ingest must say "not now": when a topic's backlog (a consuming handler's pending
 * plus unacknowledged messages) passes the high-water mark, or INGEST nears its byte limit.
 * Consumer and stream state are read from JetStream at most every 250 ms, in the background;
 * Retry-After is the time the current drain rate needs to get back below the mark.
 */
export class Backpressure {
  #broker: Broker;
  #highWater: number;
  #samples = new Map<string, _Sample>();
  #refreshing = new Set<string>();
  #stream = { at: 0, bytes: 0, maxBytes: -1, msgs: 0 };
  #maxDelayed: number;
  #delayed = { at: 0, waiting: 0 };
  /** Delayed readings accepted since start, so a sample taken before some of them is corrected. */
  #delayedAdded = 0;

  /**
   * @param highWater readings waiting for one handler before ingest answers 429
   * @param maxDelayed delayed readings waiting at once before delayed ingest answers 429
   */
  constructor(broker: Broker, highWater: number, maxDelayed = 10_000) {
    this.#broker = broker;
    this.#highWater = highWater;
    this.#maxDelayed = maxDelayed;
  }

  /**
   * Whether delayed readings should be refused now: no handler drains them before their time, so
   * they have a budget of their own, by count (`maxDelayed`) and by an estimate of their bytes
   * (at most a quarter of INGEST). The request is also subject to {@link check}.
   */
  checkDelayed(count: number): Pressure | undefined {
    this.#refreshDelayed();
    const s = this.#stream;
    const waiting = this.#delayed.waiting;
    const bytes = s.msgs > 0 ? (waiting + count) * (s.bytes / s.msgs) : 0;
    if (waiting + count <= this.#maxDelayed && !(s.maxBytes > 0 && bytes >= s.maxBytes * 0.25)) {
      // Counted now: the next sample is up to 250 ms away, and a burst must not slip through meanwhile.
      this.#delayed.waiting += count;
      this.#delayedAdded += count;
      return undefined;
    }
    return {
      status: 429,
      error: "delayed_backlog",
      message: waiting + count > this.#maxDelayed
        ? `${waiting} delayed readings are waiting and this request adds ${count} (at most ${this.#maxDelayed}, --max-delayed)`
        : `delayed readings hold about ${Math.round(bytes)} bytes, a quarter of INGEST's ${s.maxBytes}`,
      retryAfterS: 60,
    };
  }

  #refreshDelayed(): void {
    if (Date.now() - this.#delayed.at < _STALE_MS || this.#refreshing.has(SCHEDULER_DURABLE)) return;
    this.#refreshing.add(SCHEDULER_DURABLE);
    const added = this.#delayedAdded;
    // What was accepted while the answer was under way may not be in it yet: counted on top (an
    // overestimate for at most one sample).
    void this.#broker.jsm.consumers.info(STREAMS.ingest, SCHEDULER_DURABLE)
      .then((i) => (this.#delayed = { at: Date.now(), waiting: i.num_pending + i.num_ack_pending + (this.#delayedAdded - added) }))
      .catch(() => {})
      .finally(() => this.#refreshing.delete(SCHEDULER_DURABLE));
  }

  /**
   * Whether readings for these handlers should be refused now.
   * @param runners the handlers consuming the topic
   */
  check(runners: HandlerRunner[]): Pressure | undefined {
    this.#refreshStream();
    const s = this.#stream;
    if (s.maxBytes > 0 && s.bytes >= s.maxBytes * 0.95) {
      const rate = Math.max(...runners.map((r) => this.#samples.get(r.durable)?.rate ?? 0), 0);
      const avg = s.msgs > 0 ? s.bytes / s.msgs : 1;
      const excess = s.bytes - s.maxBytes * 0.9;
      return {
        status: 507,
        error: "storage_full",
        message: `INGEST holds ${s.bytes} of its ${s.maxBytes} bytes; readings are refused until handlers drain it`,
        retryAfterS: _retryAfter(excess / avg, rate),
      };
    }
    let worst: { r: HandlerRunner; s: _Sample } | undefined;
    for (const r of runners) {
      this.#refresh(r);
      const sample = this.#samples.get(r.durable);
      if (sample && sample.backlog >= this.#highWater && (!worst || sample.backlog > worst.s.backlog)) worst = { r, s: sample };
    }
    if (!worst) return undefined;
    return {
      status: 429,
      error: "backlog",
      message: `Handler ${worst.r.built.name} has ${worst.s.backlog} readings waiting (high-water mark ${this.#highWater}); try again later`,
      retryAfterS: _retryAfter(worst.s.backlog - this.#highWater * 0.8, worst.s.rate),
    };
  }

  #refresh(r: HandlerRunner): void {
    const key = r.durable;
    const prev = this.#samples.get(key);
    if ((prev && Date.now() - prev.at < _STALE_MS) || this.#refreshing.has(key)) return;
    this.#refreshing.add(key);
    const names = r.definition.priority ? [r.durable, r.durableHigh] : [r.durable];
    void Promise.all(names.map((n) => this.#broker.jsm.consumers.info(STREAMS.ingest, n)))
      .then((infos) => {
        const now = Date.now();
        const backlog = infos.reduce((sum, i) => sum + i.num_pending + i.num_ack_pending, 0);
        const { counts } = r.stats();
        const acked = counts.acked + counts.deadLettered;
        let rate = prev?.rate ?? 0;
        if (prev && now > prev.at) {
          const instant = ((acked - prev.acked) * 1000) / (now - prev.at);
          rate = prev.rate ? 0.7 * prev.rate + 0.3 * instant : instant;
        }
        this.#samples.set(key, { at: now, backlog, acked, rate });
      })
      .catch(() => {})
      .finally(() => this.#refreshing.delete(key));
  }

  #refreshStream(): void {
    if (Date.now() - this.#stream.at < _STALE_MS || this.#refreshing.has(STREAMS.ingest)) return;
    this.#refreshing.add(STREAMS.ingest);
    void this.#broker.jsm.streams.info(STREAMS.ingest)
      .then((i) => (this.#stream = { at: Date.now(), bytes: i.state.bytes, maxBytes: i.config.max_bytes, msgs: i.state.messages }))
      .catch(() => {})
      .finally(() => this.#refreshing.delete(STREAMS.ingest));
  }
}

/** Seconds the excess needs at this drain rate, between 1 and 300 (30 when nothing drains). */
function _retryAfter(excess: number, ratePerS: number): number {
  if (!(ratePerS > 0.01)) return 30;
  return Math.min(300, Math.max(1, Math.ceil(excess / ratePerS)));
}
