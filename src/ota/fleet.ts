import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV, type KvEntry, type KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import { canaryPolicy, CanaryPolicyError, type CanaryPolicy } from "../release/canary.ts";
import type { Logger } from "../util/log.ts";
import { BundleBusyError, BundleError, FleetFetchError } from "./errors.ts";
import { fetchFleetBundle, parseFleetRecord, recordKey, recordLabel, type FleetRecord } from "./fleet_record.ts";
import type { BundleManager } from "./manager.ts";

/** Options of {@link FleetWatcher}. */
export interface FleetOptions {
  /** JetStream client bound to the hub's domain (through the leafnode). */
  js: JetStreamClient;
  /** The hub's JetStream domain, for the view and the log. */
  domain: string;
  /** KV bucket and key holding the desired record. */
  kv: string;
  key: string;
  /** Largest bundle the device accepts (`--max-bundle-size`). */
  maxBytes: number;
  manager: BundleManager;
  /** Where the last settled record is kept across restarts (`<data-dir>/bundles/fleet.json`). */
  stateFile: string;
  log: Logger;
  /** First delay before trying the hub again (doubles up to 10 s); default 1000 ms. */
  retryMs?: number;
  /** The desired key is also read this often, in case a watch missed an update; default 30 s. */
  pollMs?: number;
}

/** What became of one desired record on this device. */
export interface FleetOutcome {
  release: number;
  result: "installed" | "current" | "refused";
  /** The refusal's code (`bad_hash`, `stale_release`, …). */
  error?: string;
  message?: string;
  at: string;
}

/** `fleet` in `GET /v1/bundles`. */
export interface FleetView {
  domain: string;
  kv: string;
  key: string;
  /** The watch on the hub's key is open. */
  watching: boolean;
  state: "connecting" | "idle" | "waiting" | "fetching" | "installing" | "canary";
  desired: (FleetRecord & { revision: number; seenAt: string }) | null;
  lastOutcome: FleetOutcome | null;
  /** The last problem reaching the hub or reading the record (cleared by the next success). */
  lastError: { message: string; at: string } | null;
}

type _Step = "done" | "busy" | "retry";

/**
 * Watches the hub's KV key naming the desired release; fetches each new release from the hub's
 * object store and installs it through {@link BundleManager.install}, the path of `POST
 * /v1/bundles`, so the same verification applies. Each record is acted on once: a refusal is
 * recorded (and kept across restarts), never retried.
 */
export class FleetWatcher {
  #o: FleetOptions;
  #stopped = false;
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #desired: FleetRecord | null = null;
  #settled: string | undefined;
  #fetched: { key: string; bytes: Uint8Array } | undefined;
  #working: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  #poll: ReturnType<typeof setInterval> | undefined;
  #wakers = new Set<() => void>();
  #view: FleetView;

  constructor(o: FleetOptions) {
    this.#o = o;
    this.#view = { domain: o.domain, kv: o.kv, key: o.key, watching: false, state: "connecting", desired: null, lastOutcome: null, lastError: null };
  }

  /** Read the settled record of an earlier run, then watch the hub in the background. */
  async start(): Promise<void> {
    try {
      const s = JSON.parse(await readFile(this.#o.stateFile, "utf8")) as { settled?: string; outcome?: FleetOutcome };
      this.#settled = s.settled;
      this.#view.lastOutcome = s.outcome ?? null;
    } catch { /* first start, or an unreadable file: every record is new */ }
    this.#o.log.info(`fleet: watching ${this.#o.kv}/${this.#o.key} in JetStream domain ${this.#o.domain}`);
    this.#loop = this.#watchLoop();
  }

  /** `fleet` of `GET /v1/bundles`. */
  view(): FleetView {
    return structuredClone(this.#view);
  }

  /** Stop watching; an installation under way finishes first. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#poll);
    this.#watch?.stop();
    for (const w of this.#wakers) w();
    await this.#loop;
    await this.#working;
  }

  async #watchLoop(): Promise<void> {
    const base = this.#o.retryMs ?? 1_000;
    let delay = base;
    while (!this.#stopped) {
      try {
        const kv = await new Kvm(this.#o.js).open(this.#o.kv);
        await kv.status(); // the bucket exists on the hub (open alone does not check)
        this.#consider(await kv.get(this.#o.key));
        const w = await kv.watch({ key: this.#o.key });
        this.#watch = w;
        this.#view.watching = true;
        this.#view.lastError = null;
        delay = base;
        clearInterval(this.#poll);
        this.#poll = setInterval(() => void this.#pollOnce(kv), this.#o.pollMs ?? 30_000);
        for await (const e of w) this.#consider(e);
      } catch (e) {
        this.#problem(`cannot watch ${this.#o.kv}/${this.#o.key} in domain ${this.#o.domain}: ${(e as Error).message}`);
      }
      this.#view.watching = false;
      clearInterval(this.#poll);
      if (this.#stopped) break;
      await this.#sleep(delay);
      delay = Math.min(delay * 2, 10_000);
    }
  }

  async #pollOnce(kv: KV): Promise<void> {
    try {
      this.#consider(await kv.get(this.#o.key));
    } catch { /* the watch loop reports hub problems */ }
  }

  #consider(e: KvEntry | null): void {
    if (!e || e.operation !== "PUT") return;
    const p = parseFleetRecord(e.value);
    if (!p.record) {
      this.#problem(`desired record ${this.#o.kv}/${this.#o.key} revision ${e.revision} is invalid: ${p.problem}`);
      return;
    }
    const r = p.record;
    if (this.#desired && recordKey(this.#desired) === recordKey(r)) return;
    this.#desired = r;
    this.#view.desired = { ...r, revision: e.revision, seenAt: new Date().toISOString() };
    this.#o.log.info(`fleet: desired release is ${recordLabel(r)}, object ${r.bucket}/${r.object}`);
    this.#working ??= this.#work().finally(() => (this.#working = undefined));
  }

  async #work(): Promise<void> {
    const base = this.#o.retryMs ?? 1_000;
    let delay = base;
    while (!this.#stopped) {
      const r = this.#desired;
      if (!r || recordKey(r) === this.#settled) break;
      const step = await this.#apply(r);
      if (step === "done") {
        this.#settled = recordKey(r);
        this.#fetched = undefined;
        delay = base;
        await this.#save();
        continue;
      }
      this.#view.state = "waiting";
      await this.#sleep(step === "busy" ? base : delay);
      if (step === "retry") delay = Math.min(delay * 2, 30_000);
    }
    this.#view.state = "idle";
  }

  /** Try once to bring the device to the record's release. */
  async #apply(r: FleetRecord): Promise<_Step> {
    const m = this.#o.manager;
    const label = `Cannot activate bundle ${recordLabel(r)}`;
    if (r.release === m.activeRelease) return this.#outcome({ release: r.release, result: "current" });
    if (r.release < m.activeRelease) {
      return this.#refused(r, "stale_release", `${label}: release ${r.release} is not above the active release ${m.activeRelease} (a rollback needs a new, signed release)`);
    }
    if (m.failedReleases.includes(r.release)) return this.#refused(r, "stale_release", `${label}: release ${r.release} already failed on this device`);
    if (m.busyReason) return "busy";
    let policy: CanaryPolicy | undefined;
    try {
      policy = r.canary ? canaryPolicy(r.canary) : undefined;
    } catch (e) {
      if (e instanceof CanaryPolicyError) return this.#refused(r, "invalid_record", `${label}: the record's canary: ${e.message}`);
      throw e;
    }
    try {
      const key = recordKey(r);
      if (this.#fetched?.key !== key) {
        this.#view.state = "fetching";
        this.#fetched = { key, bytes: await fetchFleetBundle(this.#o.js, r, this.#o.maxBytes) };
      }
      this.#view.state = "installing";
      const res = await m.install(this.#fetched.bytes, `fleet ${this.#o.domain}/${this.#o.kv}/${this.#o.key}`, { canary: policy });
      this.#view.lastError = null;
      const decision = res.status === "canary" ? m.canaryDecision() : undefined;
      if (decision) {
        this.#view.state = "canary";
        const stop = this.#stopSignal();
        const d = await Promise.race([decision, stop.signal]).finally(stop.cancel);
        // Stopped while the canary ran: not settled, so the next start runs the canary again.
        if (!d || d.interrupted) return "retry";
        if (!d.promoted) return this.#refused(r, "canary_rolled_back", `${label}: the canary was rolled back: ${d.reason}`);
      }
      return this.#outcome({ release: r.release, result: "installed" });
    } catch (e) {
      if (e instanceof BundleBusyError) return "busy";
      if (e instanceof FleetFetchError || !(e instanceof BundleError)) {
        this.#problem((e as Error).message);
        return "retry";
      }
      return this.#refused(r, e.code, e.message);
    }
  }

  #refused(r: FleetRecord, error: string, message: string): _Step {
    this.#o.log.warn(`fleet: ${message}`);
    return this.#outcome({ release: r.release, result: "refused", error, message });
  }

  #outcome(o: Omit<FleetOutcome, "at">): _Step {
    this.#view.lastOutcome = { ...o, at: new Date().toISOString() };
    if (o.result === "installed") this.#o.log.info(`fleet: release ${o.release} installed`);
    return "done";
  }

  #problem(message: string): void {
    if (this.#view.lastError?.message !== message) this.#o.log.warn(`fleet: ${message}`);
    this.#view.lastError = { message, at: new Date().toISOString() };
  }

  async #save(): Promise<void> {
    const file = this.#o.stateFile;
    try {
      await mkdir(dirname(file), { recursive: true });
      await writeFile(`${file}.tmp`, JSON.stringify({ settled: this.#settled, outcome: this.#view.lastOutcome }, null, 2));
      await rename(`${file}.tmp`, file);
    } catch (e) {
      this.#o.log.warn(`fleet: cannot write ${file}: ${(e as Error).message}`);
    }
  }

  /** `signal` resolves (undefined) when {@link stop} is called; `cancel` forgets it. */
  #stopSignal(): { signal: Promise<undefined>; cancel: () => void } {
    let wake = () => {};
    const signal = new Promise<undefined>((r) => {
      if (this.#stopped) return r(undefined);
      wake = () => {
        this.#wakers.delete(wake);
        r(undefined);
      };
      this.#wakers.add(wake);
    });
    return { signal, cancel: () => void this.#wakers.delete(wake) };
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stopped) return;
    let wake = () => {};
    await new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      wake = () => {
        clearTimeout(t);
        r();
      };
      this.#wakers.add(wake);
    });
    this.#wakers.delete(wake);
  }
}
