/**
 * The device's side of its hub: every few seconds it publishes a status record (release, canaries,
 * OUTBOX's fill) to `outpost.devices.<its domain>`, which the hub's stream `OUTPOST_DEVICES` keeps
 * (the last record per device), through the leafnode. (Not a KV bucket: `$KV.>` never crosses a
 * device's leafnode, see broker/nats_server.ts.) A stored record is the proof the hub was reached; how long it has not been,
 * and how close OUTBOX is to dropping results the hub has not copied, is the gap alarm (metrics,
 * `/readyz` warnings, one log line when it starts and when it ends).
 * @module
 */
import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { DEVICE_REPORTS } from "../broker/subjects.ts";
import { STREAMS } from "../broker/streams.ts";
import type { Logger } from "../util/log.ts";

/** The hub's stream of device reports. */
export const DEVICES_STREAM = "OUTPOST_DEVICES";

/** The configuration of {@link DEVICES_STREAM}: the last report of each device, kept 30 days. */
export const DEVICES_STREAM_CONFIG = {
  name: DEVICES_STREAM,
  subjects: [`${DEVICE_REPORTS}.*`],
  retention: RetentionPolicy.Limits,
  storage: StorageType.File,
  discard: DiscardPolicy.Old,
  max_msgs_per_subject: 1,
  max_age: 30 * 86_400 * 1e9,
  description: "outpost: the last report of each device (release, canaries, OUTBOX)",
};

/** The hub's stream of device reports; made by `outpost hub attach` or by the first device to report. */
export async function ensureDevicesStream(jsm: JetStreamManager): Promise<void> {
  try {
    await jsm.streams.info(DEVICES_STREAM);
  } catch (e) {
    if (!(e instanceof JetStreamApiError)) throw e;
    await jsm.streams.add(DEVICES_STREAM_CONFIG);
  }
}

/** OUTBOX as the device sees it. */
export interface OutboxState {
  messages: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  /** Time of the oldest result kept (ISO), null when empty. */
  firstAt: string | null;
  maxBytes: number;
  maxMsgs: number;
  maxAgeSeconds: number;
  /** How full OUTBOX is against its nearest limit (bytes, messages or the oldest result's age), 0..1. */
  fill: number;
  /** Results stored since the hub was last reached (not known to be copied). */
  uncopied: number;
  /**
   * How close OUTBOX is to dropping results the hub has not copied, 0..1: those results against
   * the nearest limit (their bytes, their count, the time since the hub was reached against max age).
   * At 1 the oldest of them are being dropped.
   */
  atRisk: number;
}

/** `hub` in `/readyz` and the record the hub keeps. */
export interface HubLinkView {
  domain: string;
  lastReachedAt: string | null;
  /** Seconds since the hub was last reached (since start when never). */
  unreachedSeconds: number;
  lastError: string | null;
  outbox: OutboxState | null;
  /** The gap alarm's text while it is on. */
  alarm: string | null;
}

/** Options of {@link HubLink}. */
export interface HubLinkOptions {
  /** This device's JetStream domain: its key in the bucket. */
  device: string;
  /** The hub's domain (for the view and the log). */
  domain: string;
  /** JetStream client and manager bound to the hub's domain. */
  hubJs: JetStreamClient;
  hubJsm: () => Promise<JetStreamManager>;
  /** The device's own JetStream manager (OUTBOX). */
  jsm: () => JetStreamManager;
  /** Results not yet on the hub when the device knows exactly (the uplink's pending count). */
  uncopied?: (() => number | undefined) | undefined;
  /** What the record says besides OUTBOX (release, canaries). */
  status: () => Record<string, unknown>;
  log: Logger;
  /** How often to report; default 10 s. */
  everyMs?: number | undefined;
  /** The alarm sounds once the hub has not been reached this long … (default 60 s) */
  alarmAfterMs?: number | undefined;
  /** … and OUTBOX is this full (default 0.8). */
  alarmFill?: number | undefined;
}

/** Reports to the hub and keeps the gap alarm. */
export class HubLink {
  #o: HubLinkOptions;
  #streamReady = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  #started = Date.now();
  #reached: number | undefined;
  #lastError: string | null = null;
  #outbox: OutboxState | null = null;
  #alarm: string | null = null;
  #busy = false;
  /** OUTBOX's last sequence when the hub was last reached. */
  #seqAtReach: number | undefined;

  constructor(o: HubLinkOptions) {
    this.#o = o;
  }

  start(): void {
    this.#o.log.info(`hub: reporting to ${this.subject} (stream ${DEVICES_STREAM} in JetStream domain ${this.#o.domain}) every ${(this.#o.everyMs ?? 10_000) / 1000} s`);
    void this.tick();
    this.#timer = setInterval(() => void this.tick(), this.#o.everyMs ?? 10_000);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  get subject(): string {
    return `${DEVICE_REPORTS}.${this.#o.device}`;
  }

  /** Read OUTBOX, judge the alarm, write the record. */
  async tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      this.#outbox = await this.#readOutbox().catch(() => this.#outbox);
      this.#judge();
      try {
        if (!this.#streamReady) {
          await ensureDevicesStream(await this.#o.hubJsm());
          this.#streamReady = true;
        }
        await this.#o.hubJs.publish(this.subject, JSON.stringify({ device: this.#o.device, at: new Date().toISOString(), outbox: this.#outbox, ...this.#o.status() }), { expect: { streamName: DEVICES_STREAM } });
        if (this.#reached === undefined || this.#lastError) this.#o.log.info(`hub: reached the hub (domain ${this.#o.domain})`);
        this.#reached = Date.now();
        if (this.#outbox) this.#seqAtReach = this.#outbox.lastSeq;
        this.#lastError = null;
      } catch (e) {
        this.#streamReady = false;
        if (this.#lastError === null) this.#o.log.warn(`hub: cannot reach the hub (domain ${this.#o.domain}): ${(e as Error).message}; results wait in OUTBOX`);
        this.#lastError = (e as Error).message;
      }
      this.#judge();
    } finally {
      this.#busy = false;
    }
  }

  /** Seconds since the hub was last reached. */
  get unreachedSeconds(): number {
    return (Date.now() - (this.#reached ?? this.#started)) / 1000;
  }

  view(): HubLinkView {
    return {
      domain: this.#o.domain, lastReachedAt: this.#reached ? new Date(this.#reached).toISOString() : null,
      unreachedSeconds: Math.round(this.unreachedSeconds * 10) / 10, lastError: this.#lastError, outbox: this.#outbox, alarm: this.#alarm,
    };
  }

  #judge(): void {
    const ob = this.#outbox;
    const away = this.unreachedSeconds * 1000;
    const on = ob !== null && away >= (this.#o.alarmAfterMs ?? 60_000) && ob.atRisk >= (this.#o.alarmFill ?? 0.8);
    const text = on
      ? `the hub has not been reached for ${Math.round(away / 1000)} s: ${ob.uncopied} results wait for it, ${Math.round(ob.atRisk * 100)} % of what OUTBOX keeps ` +
        `(${ob.bytes} of ${ob.maxBytes > 0 ? ob.maxBytes : "unlimited"} bytes${ob.maxMsgs > 0 ? `, ${ob.messages} of ${ob.maxMsgs} results` : ""}, max age ${ob.maxAgeSeconds} s); ` +
        (ob.atRisk >= 1 ? "the oldest of them are being dropped" : "past 100 % the oldest of them are dropped before the hub copies them")
      : null;
    if (text && !this.#alarm) this.#o.log.warn(`hub: gap alarm: ${text}`);
    if (!text && this.#alarm) this.#o.log.info("hub: gap alarm over");
    this.#alarm = text;
  }

  async #readOutbox(): Promise<OutboxState> {
    const i = await this.#o.jsm().streams.info(STREAMS.outbox);
    const c = i.config;
    const s = i.state;
    const ageS = c.max_age > 0 ? c.max_age / 1e9 : 0;
    const first = s.messages > 0 && s.first_ts ? Date.parse(s.first_ts) : undefined;
    const fills = [
      c.max_bytes > 0 ? s.bytes / c.max_bytes : 0,
      c.max_msgs > 0 ? s.messages / c.max_msgs : 0,
      ageS > 0 && first !== undefined ? (Date.now() - first) / 1000 / ageS : 0,
    ];
    // Results after the last reach (all of them when the hub was never reached since start).
    const from = this.#seqAtReach ?? s.first_seq - 1;
    const known = this.#o.uncopied?.();
    const uncopied = known ?? Math.max(0, s.last_seq - Math.max(from, s.first_seq - 1));
    const avg = s.messages ? s.bytes / s.messages : 0;
    const away = (Date.now() - (this.#reached ?? first ?? Date.now())) / 1000;
    const risks = [
      c.max_bytes > 0 ? (uncopied * avg) / c.max_bytes : 0,
      c.max_msgs > 0 ? uncopied / c.max_msgs : 0,
      ageS > 0 && uncopied > 0 ? away / ageS : 0,
      // Results already dropped uncopied: OUTBOX starts after the last position the hub was known at.
      known === undefined && from < s.first_seq - 1 ? 1 : 0,
    ];
    return {
      messages: s.messages, bytes: s.bytes, firstSeq: s.first_seq, lastSeq: s.last_seq, firstAt: first !== undefined ? new Date(first).toISOString() : null,
      maxBytes: c.max_bytes, maxMsgs: c.max_msgs, maxAgeSeconds: ageS, fill: Math.min(1, Math.max(...fills)),
      uncopied, atRisk: Math.round(Math.min(1, Math.max(...risks)) * 1000) / 1000,
    };
  }
}
