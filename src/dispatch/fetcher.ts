import type { Consumer, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../util/log.ts";
import type { Slots, Lane } from "./slots.ts";
import type { TokenBucket } from "./token_bucket.ts";

/** What a {@link Fetcher} needs from its handler. */
export interface FetcherOptions {
  /** One consumer per lane: normal readings, then (with priorities) high ones. */
  lanes: Consumer[];
  /** The handler's in-flight budget; each message handed on holds one slot until released. */
  slots: Slots;
  bucket: TokenBucket | undefined;
  /** Called with each pulled message once it holds its slot. */
  accept: (m: JsMsg) => void;
  /** How often to tell the server a message waiting for a slot is still ours. */
  workingEveryMs: number;
  log: Logger;
}

const _sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Most messages a single lane holds beyond its concurrency, waiting for a slot. */
const _MAX_AHEAD = 256;

/**
 * The pull loops of one handler: never more messages than it has room for, within its rate
 * limit, high-priority lane first by weight. Pulls last 1 s (the client's shortest), so
 * {@link stop} returns within about a second.
 */
export class Fetcher {
  #o: FetcherOptions;
  #stopping = false;
  #loops: Promise<void>[];

  constructor(o: FetcherOptions) {
    this.#o = o;
    this.#loops = o.lanes.length === 1 ? [this.#single(o.lanes[0]!)] : o.lanes.map((c, i) => this.#lane(c, i as Lane));
  }

  /**
   * Stop pulling; resolves once the pulls under way have run out.
   * @param drainMs how long messages pulled ahead may wait for a slot and be handled here; those
   *   still waiting then go back to the stream (a nak, which counts a delivery: a drain avoids it)
   */
  async stop(drainMs = 0): Promise<void> {
    this.#stopping = true;
    this.#wakeUp();
    if (drainMs > 0) {
      await Promise.all(this.#loops.map((l) => l.catch(() => {})));
      const until = Date.now() + drainMs;
      while (this.#waiting > 0 && Date.now() < until) await _sleep(5);
    }
    this.#o.slots.close();
    await Promise.all(this.#loops.map((l) => l.catch(() => {})));
  }

  /**
   * The only lane, pulling ahead: besides the messages that hold a slot, up to `capacity` more
   * wait here for one (kept ours with `working()`), so a freed slot takes a message that is
   * already here instead of waiting for a pull's round trip to nats-server. Under load that round
   * trip was one of the host turns each message's cycle waited for.
   */
  async #single(consumer: Consumer): Promise<void> {
    const slots = this.#o.slots;
    const ahead = Math.min(slots.capacity, _MAX_AHEAD);
    while (!this.#stopping) {
      const room = slots.capacity - slots.used + ahead - this.#waiting;
      if (room <= 0) {
        await new Promise<void>((r) => (this.#wake = r));
        continue;
      }
      const want = await this.#allowance(room);
      if (want === 0) continue;
      try {
        const batch = await consumer.fetch({ max_messages: want, expires: 1_000 });
        for await (const m of batch) {
          this.#o.bucket?.take(1);
          // A free slot and nothing pulled before it waiting: straight on, no timer, no promise.
          if (this.#waiting === 0 && slots.tryAcquire(1) === 1) {
            this.#o.accept(m);
            continue;
          }
          this.#waiting++;
          void this.#whenSlot(0, m).finally(() => {
            this.#waiting--;
            this.#wakeUp();
          });
        }
      } catch (e) {
        if (await this.#failed(e)) break;
      }
    }
  }

  /** Messages pulled ahead, waiting for a slot. */
  #waiting = 0;
  #wake: (() => void) | undefined;
  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /**
   * A lane of a handler with priorities. A pull here holds no slot (an idle lane would otherwise
   * sit on the room the busy one needs for a whole pull): each message it brings waits for a slot,
   * and the slots go to the lanes by weight. A lane pulls no more than the free room, at least one,
   * so each lane holds at most one message beyond the handler's concurrency.
   */
  async #lane(consumer: Consumer, lane: Lane): Promise<void> {
    const slots = this.#o.slots;
    while (!this.#stopping) {
      const want = await this.#allowance(Math.max(1, slots.capacity - slots.used));
      if (want === 0) continue;
      try {
        const batch = await consumer.fetch({ max_messages: want, expires: 1_000 });
        const waits: Promise<void>[] = [];
        for await (const m of batch) {
          this.#o.bucket?.take(1);
          waits.push(this.#whenSlot(lane, m));
        }
        await Promise.all(waits);
      } catch (e) {
        if (await this.#failed(e)) break;
      }
    }
  }

  /** Wait for a slot for a message already pulled (keeping it ours meanwhile), then hand it on. */
  async #whenSlot(lane: Lane, m: JsMsg): Promise<void> {
    const timer = setInterval(() => m.working(), this.#o.workingEveryMs);
    const got = await this.#o.slots.acquire(lane, 1);
    clearInterval(timer);
    if (got === 0) m.nak(); // stopping: straight back to the stream
    else this.#o.accept(m);
  }

  /**
   * How many messages the rate limit lets a pull ask for now, at most `want`; 0 after waiting a
   * little for the next token (the caller loops).
   */
  async #allowance(want: number): Promise<number> {
    const bucket = this.#o.bucket;
    if (!bucket) return want;
    const wait = bucket.waitMs(1);
    if (wait > 0) {
      await _sleep(Math.min(wait, 250));
      return 0;
    }
    return Math.max(1, Math.min(want, Math.floor(bucket.available())));
  }

  /** Log a failed pull and wait before the next; true when stopping. */
  async #failed(e: unknown): Promise<boolean> {
    if (this.#stopping) return true;
    this.#o.log.warn(`fetch failed: ${(e as Error).message}; retrying in 1 s`);
    await _sleep(1_000);
    return false;
  }
}
