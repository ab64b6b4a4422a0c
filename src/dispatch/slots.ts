/** A lane of a handler's consumer: 0 normal readings, 1 high-priority readings. */
export type Lane = 0 | 1;

interface _Waiter {
  want: number;
  resolve(granted: number): void;
}

/**
 * The in-flight budget of one handler, shared by its lanes. When both lanes wait for room, the
 * high lane gets `weight` grants for each one of the normal lane, so high-priority readings go
 * first under load while normal ones never starve.
 */
export class Slots {
  #free: number;
  readonly capacity: number;
  #weight: number;
  #streak = 0;
  #waiters: [_Waiter[], _Waiter[]] = [[], []];
  #closed = false;

  constructor(capacity: number, weight = 1) {
    this.capacity = capacity;
    this.#free = capacity;
    this.#weight = weight;
  }

  /** Slots in use. */
  get used(): number {
    return this.capacity - this.#free;
  }

  /**
   * Wait for room, then take up to `want` slots.
   * @returns how many were granted (at least 1), or 0 once {@link close} was called
   */
  acquire(lane: Lane, want: number): Promise<number> {
    if (this.#closed) return Promise.resolve(0);
    return new Promise<number>((resolve) => {
      this.#waiters[lane].push({ want: Math.max(1, want), resolve });
      this.#grant();
    });
  }

  /**
   * Take up to `want` slots now, only if nobody waits for one (so waiters keep their order).
   * @returns how many were taken (0 when none is free, someone waits, or after {@link close})
   */
  tryAcquire(want: number): number {
    if (this.#closed || this.#free <= 0 || this.#waiters[0].length || this.#waiters[1].length) return 0;
    const n = Math.min(Math.max(1, want), this.#free);
    this.#free -= n;
    return n;
  }

  /** Give back `n` slots. */
  release(n: number): void {
    if (n <= 0) return;
    this.#free = Math.min(this.capacity, this.#free + n);
    this.#grant();
  }

  /** Wake every waiter with 0: the handler is stopping. */
  close(): void {
    this.#closed = true;
    for (const q of this.#waiters) for (const w of q.splice(0)) w.resolve(0);
  }

  #grant(): void {
    while (this.#free > 0) {
      const high = this.#waiters[1].length > 0;
      const normal = this.#waiters[0].length > 0;
      if (!high && !normal) return;
      const lane: Lane = high && normal ? (this.#streak < this.#weight ? 1 : 0) : high ? 1 : 0;
      // A normal grant, contended or not, ends the high lane's streak: high readings that arrive
      // after it get their `weight` grants first again.
      this.#streak = lane === 1 ? (normal ? this.#streak + 1 : this.#streak) : 0;
      const w = this.#waiters[lane].shift()!;
      const n = Math.min(w.want, this.#free);
      this.#free -= n;
      w.resolve(n);
    }
  }
}
