/**
 * One worker thread started ahead of need (Node): starting a worker costs 40–50 ms on this
 * project's machine, a third of a handler's cold start; a spare that is already up takes its
 * handler in 5–8 ms. The spare runs nothing but a bootstrap that waits for the module to import;
 * it is made with the options of the last worker started (memory limit, environment), and only
 * serves a worker with the same ones. It does not keep the process alive until it is taken.
 * @module
 */
import type { Worker, WorkerOptions } from "node:worker_threads";

/** The spare's whole program: import the module the first message names. */
const _BOOT = `data:text/javascript,${encodeURIComponent(
  'import { parentPort } from "node:worker_threads";\n' +
    'parentPort.once("message", (m) => { import(m.outpostLoad); });\n',
)}`;

/** Whether spares are used here: Node only (Deno and Bun start their workers as before). */
export const SPARES = !("Bun" in globalThis) && !("Deno" in globalThis);

/** Started workers with one spare; `make` is `new Worker` of the caller's runtime. */
export class SpareWorkers {
  #make: (url: URL, o: WorkerOptions) => Worker;
  #spare: { key: string; w: Worker; dead: boolean } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #delayMs: number;

  /** @param delayMs how long after a start the next spare is made (out of the way of the one loading) */
  constructor(make: (url: URL, o: WorkerOptions) => Worker, delayMs = 250) {
    this.#make = make;
    this.#delayMs = delayMs;
  }

  /**
   * A worker running `url` with options `o`: the spare when it was made with the same options,
   * else a new one. Either way a spare with these options is made again shortly after.
   */
  start(url: URL, o: WorkerOptions): Worker {
    const key = _key(o);
    const s = this.#spare;
    this.#spare = undefined;
    let w: Worker;
    if (s && s.key === key && !s.dead) {
      w = s.w;
      w.ref();
      w.postMessage({ outpostLoad: url.href });
    } else {
      if (s) void s.w.terminate();
      w = this.#make(url, o);
    }
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#refill(key, o), this.#delayMs);
    (this.#timer as { unref?: () => void }).unref?.();
    return w;
  }

  /** Stop the spare (shutdown). */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    const s = this.#spare;
    this.#spare = undefined;
    await s?.w.terminate();
  }

  #refill(key: string, o: WorkerOptions): void {
    if (this.#spare) return;
    let w: Worker;
    try {
      w = this.#make(new URL(_BOOT), { ...o, name: "outpost-spare" });
    } catch {
      return; // no spare: the next start makes its worker itself
    }
    const s = { key, w, dead: false };
    w.unref();
    w.once("exit", () => (s.dead = true));
    w.once("error", () => (s.dead = true));
    this.#spare = s;
  }
}

function _key(o: WorkerOptions): string {
  // Not the name: it only labels the thread.
  return JSON.stringify([o.resourceLimits ?? null, o.env ?? null, o.execArgv ?? null, o.stdout ?? null, o.stderr ?? null]);
}
