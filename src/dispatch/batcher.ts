import type { JsMsg } from "@nats-io/jetstream";

/**
 * Gathers messages into batches of `size`, or fewer once `maxWaitMs` passed since the first one
 * of a batch arrived.
 */
export class Batcher {
  #size: number;
  #maxWaitMs: number;
  #flush: (msgs: JsMsg[]) => void;
  #open: JsMsg[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(size: number, maxWaitMs: number, flush: (msgs: JsMsg[]) => void) {
    this.#size = size;
    this.#maxWaitMs = maxWaitMs;
    this.#flush = flush;
  }

  add(m: JsMsg): void {
    this.#open.push(m);
    if (this.#open.length >= this.#size) this.flushNow();
    else if (this.#open.length === 1) this.#timer = setTimeout(() => this.flushNow(), this.#maxWaitMs);
  }

  /** Hand over what is gathered now. */
  flushNow(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#open.length) return;
    const msgs = this.#open;
    this.#open = [];
    this.#flush(msgs);
  }
}
