import { statfs } from "node:fs/promises";
import type { Broker } from "./connect.ts";
import type { Logger } from "../util/log.ts";

/** Why the broker cannot take readings now. */
export type BrokerTrouble = "disconnected" | "not_answering" | "disk_full";

/** What {@link BrokerHealth.state} reports. */
export interface BrokerState {
  ok: boolean;
  trouble: BrokerTrouble | undefined;
  /** Since when (epoch ms) it has been in trouble. */
  since: number | undefined;
  /** One sentence for a person. */
  message: string | undefined;
}

/** Options of {@link BrokerHealth}. */
export interface BrokerHealthOptions {
  /** The JetStream store directory, to tell a full disk from a stuck server (embedded only). */
  storeDir?: string | undefined;
  /** Called when an embedded server is stuck and must be replaced (kill -9, then the supervisor restarts it). */
  replace?: (() => void) | undefined;
  /** Probe every this many ms (default 1000); a probe that takes 2 s failed. */
  everyMs?: number;
  /** Replace a stuck server (disk not full) after this long (default 30 s). */
  stuckMs?: number;
  log: Logger;
}

// A disk with less free space than this holds no more JetStream blocks: nats-server 2.9.10
// stalls on ENOSPC (no answer even to a ping) and does not recover when space comes back.
const _FULL_BYTES = 1024 * 1024;
const _PROBE_TIMEOUT_MS = 2_000;

/**
 * Asks the broker once a second whether JetStream answers (an account-info request, so a paused
 * or wedged server is seen, not only a dropped connection). Ingest refuses at once while it does
 * not, `/readyz` reports it, and an embedded server that is stuck is replaced: after the disk has
 * room again, or after `stuckMs` when the disk was never the cause.
 */
export class BrokerHealth {
  #broker: Broker;
  #o: BrokerHealthOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #trouble: BrokerTrouble | undefined;
  #since: number | undefined;
  #stopped = false;
  #probing = false;

  constructor(broker: Broker, o: BrokerHealthOptions) {
    this.#broker = broker;
    this.#o = o;
  }

  /** Start probing. */
  start(): void {
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** The last probe's verdict (a dropped connection is seen at once). */
  state(): BrokerState {
    const trouble = !this.#broker.connected() ? "disconnected" : this.#trouble;
    if (!trouble) return { ok: true, trouble: undefined, since: undefined, message: undefined };
    const since = this.#since ?? Date.now();
    const secs = Math.max(1, Math.round((Date.now() - since) / 1000));
    const message = trouble === "disk_full"
      ? `The disk of the JetStream store is full (under ${_FULL_BYTES} bytes free) and nats-server stopped answering ${secs} s ago`
      : trouble === "not_answering" ? `nats-server has not answered for ${secs} s` : "The connection to nats-server is down";
    return { ok: false, trouble, since, message };
  }

  #schedule(): void {
    if (this.#stopped) return;
    // In trouble, ask five times as often: readings are refused until an answer comes back.
    const every = this.#o.everyMs ?? 1_000;
    this.#timer = setTimeout(() => void this.#probe().finally(() => this.#schedule()), this.#trouble ? every / 5 : every);
  }

  async #probe(): Promise<void> {
    if (this.#probing || !this.#broker.connected()) return;
    this.#probing = true;
    try {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const answered = await Promise.race([
        this.#broker.jsm.getAccountInfo().then(() => true, () => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), _PROBE_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
      if (answered) return this.#recovered();
      const full = await this.#diskFull();
      const wasFull = this.#trouble === "disk_full";
      const trouble: BrokerTrouble = full ? "disk_full" : "not_answering";
      if (this.#trouble !== trouble) {
        this.#since ??= Date.now();
        this.#trouble = trouble;
        this.#o.log.error(`${this.state().message}; readings are refused until it answers again`);
      }
      if (!full) this.#maybeReplace(wasFull);
    } finally {
      this.#probing = false;
    }
  }

  #recovered(): void {
    if (!this.#trouble) return;
    this.#o.log.info(`nats-server answers again after ${Math.round((Date.now() - (this.#since ?? Date.now())) / 1000)} s`);
    this.#trouble = undefined;
    this.#since = undefined;
  }

  /**
   * Replace a stuck embedded server: at once when the disk that stalled it has room again (it
   * would not recover by itself), else after `stuckMs`. While the disk is full this is not called:
   * a new server would stall the same way.
   */
  #maybeReplace(wasFull: boolean): void {
    const replace = this.#o.replace;
    if (!replace || this.#since === undefined) return;
    const stuckFor = Date.now() - this.#since;
    if (!wasFull && stuckFor < (this.#o.stuckMs ?? 30_000)) return;
    this.#o.log.error(`replacing the embedded nats-server: it has not answered for ${Math.round(stuckFor / 1000)} s` +
      (wasFull ? " and the disk has room again" : ""));
    this.#trouble = "not_answering";
    this.#since = Date.now();
    replace();
  }

  async #diskFull(): Promise<boolean> {
    if (!this.#o.storeDir) return false;
    try {
      const s = await statfs(this.#o.storeDir);
      return s.bavail * s.bsize < _FULL_BYTES;
    } catch {
      return false;
    }
  }
}
