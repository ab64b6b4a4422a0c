import { readdir } from "node:fs/promises";
import { basename, extname, join, resolve } from "node:path";
import { isHandlerFile } from "../bundler/handler_files.ts";
import type { CanaryPolicy, CanaryView } from "../release/canary.ts";
import type { HandlerRunner } from "../dispatch/runner.ts";
import type { Logger } from "../util/log.ts";
import { runtime } from "../runtime/detect.ts";
import { BundleActivationError, BundleBusyError } from "./errors.ts";
import { Probation, type ProbationPolicy } from "./probation.ts";
import type { FleetView } from "./fleet.ts";
import { ReleaseStore, type BundleState, type FailedRelease, type ReleaseRef } from "./store.ts";
import type { TrustStore } from "./trust.ts";
import { verifyBundle } from "./verify.ts";

/** What the manager needs of the host's handler registry (host/ implements it; ota/ never imports host/). */
export interface ManagedHandlers {
  /** The directory handlers are loaded from now. */
  readonly dir: string;
  failedCount(): number;
  runners(): HandlerRunner[];
  /** Load every handler of `dir` in fresh isolates, then switch to them at once; returns the failures. */
  switchDirectory(dir: string, opts?: { watch?: boolean; quietMs?: number }): Promise<{ name: string; message: string }[]>;
  /** Run `file` as a canary of the running handler `name` (see HandlerRegistry.startCanary). */
  startCanary(name: string, file: string, policy: CanaryPolicy, onDecided: (promoted: boolean, reason: string) => void, opts: { promote: false }): Promise<CanaryView>;
  stopCanary(name: string, reason: string): CanaryView | undefined;
  /** The canary of handler `name` (running or the last one). */
  canaryView(name: string): CanaryView | undefined;
}

/** A release running as a canary: each changed handler of the bundle beside its active version. */
export interface BundleCanaryView {
  release: number;
  name: string;
  version: string;
  /** `starting` until every changed handler's canary takes its share (readings before that all go to the active version). */
  state: "starting" | "running" | "promoted" | "rolled back";
  reason: string | null;
  startedAt: string;
  endedAt: string | null;
  policy: CanaryPolicy;
  /** The handlers whose new version takes a share of the readings, and how each is doing. */
  handlers: { name: string; canary: CanaryView | null; decided: "promoted" | "rolled back" | null }[];
  /** Handlers new in the bundle (no version to compare with): they start at promotion. */
  added: string[];
}

/** Options of {@link BundleManager.open}. */
export interface BundleManagerOptions {
  dataDir: string;
  /** The drop-in handler directory, active while no release is. */
  workersDir: string;
  trust: TrustStore;
  /** Largest bundle file in bytes. */
  maxBytes: number;
  probation: ProbationPolicy;
  /** Watch `--workers` when it is the active source. */
  watch: boolean;
  quietMs: number;
  log: Logger;
  /** Pause after each installation step (tests kill the host there); 0 in production. */
  stepDelayMs?: number;
}

/** The outcome of a successful installation: the release is active and on probation. */
export interface InstallResult {
  release: number;
  name: string;
  version: string;
  /** `canary`: the bundle's changed handlers take a share of the readings until the budget decides. */
  status: "probation" | "canary";
  /** From the verified bundle to the new handlers consuming, in ms. */
  activationMs: number;
}

/** A release row of `GET /v1/bundles`; release 0 is the `--workers` directory. */
export type ReleaseView = ReleaseRef & { source: "bundle" | "workers"; dir: string };

/** How a canary release ended; `interrupted` when the host stopped during it (not the candidate's failure). */
export interface CanaryDecision {
  promoted: boolean;
  reason: string;
  interrupted: boolean;
}

/** `GET /v1/bundles`. */
export interface BundlesView {
  active: ReleaseView;
  previous: ReleaseView | null;
  staged: { release: number; name: string; version: string; step: string } | null;
  probation: { release: number; since: string; handled: number; failed: number; windowMs: number; windowMessages: number; failurePct: number } | null;
  failed: FailedRelease[];
  trust: { keys: string[]; threshold: number };
  lastActivation: { release: number; ms: number; at: string } | null;
  lastRollback: { release: number; to: number; reason: string; ms: number; at: string } | null;
  /** The fleet watcher (`--fleet`): the desired release seen on the hub and what became of it; null without one. */
  fleet: FleetView | null;
  /** The release running as a canary, or the last one (promoted or rolled back); null before any. */
  canary: BundleCanaryView | null;
}

const _CHECK_MS = 50;

/**
 * Installs signed bundles: verify, stage, switch the handler set, write the pointer, watch the
 * release on probation, then commit it or roll back to the previous release by itself.
 */
export class BundleManager {
  #o: BundleManagerOptions;
  #store: ReleaseStore;
  #state: BundleState;
  #registry: ManagedHandlers | undefined;
  #busy: string | undefined;
  #staged: BundlesView["staged"] = null;
  #probation: Probation | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastActivation: BundlesView["lastActivation"] = null;
  #lastRollback: BundlesView["lastRollback"] = null;
  #log: Logger;
  /** Set by the host when a fleet watcher runs; its state is part of {@link view}. */
  fleetView: (() => FleetView) | undefined;
  #canary: { view: BundleCanaryView; decided: Promise<CanaryDecision> } | undefined;
  #stopping = false;
  /** Told how each handler's canary of a canary release ended (metrics). */
  onCanary: ((handler: string, promoted: boolean) => void) | undefined;

  private constructor(o: BundleManagerOptions, store: ReleaseStore, state: BundleState) {
    this.#o = o;
    this.#store = store;
    this.#state = state;
    this.#log = o.log;
  }

  /**
   * Read the pointer and remove leftovers of interrupted installations.
   * @returns the manager; {@link handlerDir} says where handlers come from
   */
  static async open(o: BundleManagerOptions): Promise<BundleManager> {
    const store = new ReleaseStore(join(resolve(o.dataDir), "bundles"));
    const state = await store.read();
    await store.cleanup([state.active?.release ?? 0, state.previous?.release ?? 0].filter((n) => n > 0));
    const m = new BundleManager(o, store, state);
    if (state.active) {
      o.log.warn(`handlers come from release ${state.active.release} (${state.active.name} ${state.active.version}, an OTA bundle)${state.probation ? ", on probation" : ""}, ` +
        `not from the --workers directory ${resolve(o.workersDir)}: outpost bundles use-directory serves that again`);
    }
    return m;
  }

  /** Where handlers are loaded from: the active release, else `--workers`. */
  get handlerDir(): string {
    return this.#dirOf(this.#state.active);
  }

  /** Whether a release (not `--workers`) is active. */
  get releaseActive(): boolean {
    return this.#state.active !== null;
  }

  /** The active release number (0 for `--workers`). */
  get activeRelease(): number {
    return this.#state.active?.release ?? 0;
  }

  /** Releases that failed on this device (refused after verification, or rolled back). */
  get failedReleases(): number[] {
    return this.#state.failed.map((f) => f.release);
  }

  /** Where the handlers come from now, for `/v1/handlers` and the start-up log. */
  get source(): { kind: "bundle" | "workers"; release: number; dir: string } {
    const a = this.#state.active;
    return a ? { kind: "bundle", release: a.release, dir: this.#dirOf(a) } : { kind: "workers", release: 0, dir: resolve(this.#o.workersDir) };
  }

  /**
   * Serve the `--workers` directory again instead of the active release (`outpost bundles
   * use-directory`). The release stays on disk as the previous one.
   * @returns the directory now served
   * @throws BundleBusyError while an installation or rollback is under way
   */
  async useDirectory(): Promise<string> {
    const registry = this.#registry;
    if (!registry) throw new BundleBusyError("Cannot switch to the --workers directory: the host is still starting");
    const busy = this.busyReason;
    if (busy) throw new BundleBusyError(`Cannot switch to the --workers directory: ${busy}`);
    const dir = resolve(this.#o.workersDir);
    const was = this.#state.active;
    if (!was) return dir;
    this.#busy = "switching to the --workers directory";
    try {
      const failures = await registry.switchDirectory(dir, { watch: this.#o.watch, quietMs: this.#o.quietMs });
      if (failures.length) throw new BundleActivationError(`Cannot switch to the --workers directory: ${failures.map((f) => `${f.name}: ${f.message}`).join("; ")}; release ${was.release} keeps running`);
      this.#state = { active: null, previous: was, probation: null, failed: this.#state.failed };
      await this.#store.write(this.#state);
      this.#log.warn(`the --workers directory ${dir} is served again; release ${was.release} (${was.name} ${was.version}) is kept as the previous one`);
      return dir;
    } finally {
      this.#busy = undefined;
    }
  }

  /** Why {@link install} would answer `busy` now, or undefined when it would not. */
  get busyReason(): string | undefined {
    if (!this.#registry) return "the host is still starting";
    if (this.#busy) return this.#busy;
    if (this.#probation) return `release ${this.#probation.release} is still on probation`;
    return undefined;
  }

  /**
   * Start managing the registry's handlers. A release that was on probation when the host stopped
   * is judged again: its handlers must have loaded, then a fresh probation window runs.
   */
  async attach(registry: ManagedHandlers): Promise<void> {
    this.#registry = registry;
    const p = this.#state.probation;
    if (!p) return;
    if (registry.failedCount() > 0) {
      await this.#rollback(p.release, "its handlers did not all load after a restart", Date.now());
      return;
    }
    this.#log.warn(`release ${p.release} was on probation when the host stopped: probation starts again`);
    this.#startProbation(p.release);
  }

  /**
   * Verify, stage and activate a bundle file. Resolves once the new handlers consume (on
   * probation); probation continues in the background.
   * @param bytes the bundle file
   * @param via where it came from, for the log
   * @param opts.canary run the bundle's changed handlers as canaries first (see {@link canaryDecision})
   * @throws a BundleError subclass; the active release is unchanged
   */
  async install(bytes: Uint8Array, via: string, opts: { canary?: CanaryPolicy | undefined } = {}): Promise<InstallResult> {
    const registry = this.#registry;
    if (!registry) throw new BundleBusyError("Cannot install bundle: the host is still starting");
    if (this.#busy) throw new BundleBusyError(`Cannot install bundle: ${this.#busy}`);
    if (this.#probation) throw new BundleBusyError(`Cannot install bundle: release ${this.#probation.release} is still on probation`);
    this.#busy = "another bundle is being installed";
    try {
      await this.#step(`received ${bytes.length} bytes via ${via}`);
      const b = await verifyBundle(bytes, {
        trust: this.#o.trust,
        activeRelease: this.activeRelease,
        failedReleases: this.failedReleases,
        maxBytes: this.#o.maxBytes,
        runtime,
      });
      const m = b.manifest;
      const label = `bundle ${m.name} ${m.version} (release ${m.release})`;
      const t0 = Date.now();
      this.#busy = `${label} is being installed`;
      await this.#step(`${label}: verified, signed by ${b.signers.join(", ")}`);
      this.#staged = { release: m.release, name: m.name, version: m.version, step: "staging" };
      const dir = await this.#store.stage(b);
      if (opts.canary) {
        const started = await this.#startCanary({ release: m.release, name: m.name, version: m.version, signers: b.signers }, dir, opts.canary, label);
        if (started) {
          this.#log.info(`${label} runs as a canary: ${started.join(", ")} take ${Math.round(opts.canary.share * 1000) / 10} % of the readings`);
          return { release: m.release, name: m.name, version: m.version, status: "canary", activationMs: Date.now() - t0 };
        }
        this.#log.info(`${label}: no running handler changes, nothing to canary; activating`);
      }
      this.#staged.step = "switching";
      await this.#step(`${label}: staged in ${dir}`);
      const failures = await registry.switchDirectory(dir, { watch: false });
      if (failures.length) {
        const reason = failures.map((f) => `${f.name}: ${f.message}`).join("; ");
        await this.#recordFailed(m, `handlers did not load: ${reason}`);
        if (registry.dir !== dir) throw new BundleActivationError(`Cannot activate ${label}: handlers did not load: ${reason}`);
        await this.#rollback(m.release, `handlers did not start: ${reason}`, t0);
        throw new BundleActivationError(`Cannot activate ${label}: handlers did not start: ${reason}; rolled back`);
      }
      await this.#step(`${label}: handlers switched`);
      const ref: ReleaseRef = { release: m.release, name: m.name, version: m.version, activatedAt: new Date().toISOString(), signers: b.signers };
      this.#state = { ...this.#state, active: ref, previous: this.#state.active ?? _WORKERS, probation: { release: m.release, since: ref.activatedAt } };
      await this.#store.write(this.#state);
      const ms = Date.now() - t0;
      this.#lastActivation = { release: m.release, ms, at: ref.activatedAt };
      this.#log.info(`${label} is active (switched in ${ms} ms), on probation`);
      this.#startProbation(m.release);
      await this.#step(`${label}: on probation`);
      return { release: m.release, name: m.name, version: m.version, status: "probation", activationMs: ms };
    } finally {
      if (!this.#canary || this.#canary.view.state !== "running") {
        this.#busy = undefined;
        this.#staged = null;
      }
    }
  }

  /** How the canary release under way ends (undefined when none runs). */
  canaryDecision(): Promise<CanaryDecision> | undefined {
    return this.#canary && _live(this.#canary.view.state) ? this.#canary.decided : undefined;
  }

  /** End a canary release by hand: rolled back. */
  stopCanary(reason = "stopped by the operator"): BundleCanaryView | undefined {
    const c = this.#canary;
    if (!c) return undefined;
    if (_live(c.view.state)) for (const h of c.view.handlers) if (!h.decided) this.#registry?.stopCanary(h.name, reason);
    return this.#canaryView() ?? undefined;
  }

  /**
   * Start a canary of each handler of the staged release that differs from the running one.
   * @returns the handlers in canary, or undefined when none differs (the bundle activates at once)
   * @throws BundleActivationError when a candidate does not run (the staged release is removed)
   */
  async #startCanary(m: _Release, dir: string, policy: CanaryPolicy, label: string): Promise<string[] | undefined> {
    const registry = this.#registry!;
    const running = new Set(registry.runners().map((r) => r.built.name));
    const files = (await readdir(dir)).filter(isHandlerFile).sort();
    const view: BundleCanaryView = {
      release: m.release, name: m.name, version: m.version, state: "starting", reason: null,
      startedAt: new Date().toISOString(), endedAt: null, policy, handlers: [], added: [],
    };
    let settle!: (d: CanaryDecision) => void;
    const decided = new Promise<CanaryDecision>((r) => (settle = r));
    const c = { view, decided };
    const end = (promoted: boolean, reason: string) => {
      if (!_live(view.state)) return;
      view.state = promoted ? "promoted" : "rolled back";
      view.reason = reason;
      view.endedAt = new Date().toISOString();
      const interrupted = !promoted && this.#stopping;
      this.#canaryOutcome(m, dir, promoted, reason, label).then(() => settle({ promoted, reason, interrupted }), (e: Error) => {
        this.#log.error(`${label}: ${e.message}`);
        settle({ promoted: false, reason: e.message, interrupted: false });
      });
    };
    const onDecided = (name: string) => (promoted: boolean, reason: string) => {
      const h = view.handlers.find((x) => x.name === name);
      if (!h || h.decided) return;
      h.canary = registry.canaryView(name) ?? h.canary;
      h.decided = promoted ? "promoted" : "rolled back";
      this.onCanary?.(name, promoted);
      if (!promoted) {
        for (const o of view.handlers) if (!o.decided) registry.stopCanary(o.name, `the canary of ${name} in the same release was rolled back`);
        return end(false, `${name}: ${reason}`);
      }
      if (view.handlers.every((x) => x.decided === "promoted")) end(true, view.handlers.length === 1 ? `${name}: ${reason}` : `every handler within budget (last ${name}: ${reason})`);
    };
    this.#canary = c;
    for (const f of files) {
      if (view.state !== "starting") break; // a canary started already decided (crashed), or the operator stopped it
      const name = basename(f, extname(f));
      if (!running.has(name)) {
        view.added.push(name);
        continue;
      }
      view.handlers.push({ name, canary: null, decided: null });
      try {
        view.handlers.at(-1)!.canary = await registry.startCanary(name, join(dir, f), policy, onDecided(name), { promote: false });
      } catch (e) {
        view.handlers.pop();
        if ((e as { same?: boolean }).same) continue;
        const reason = `${name}: ${(e as Error).message}`;
        // Ended here: the canaries stopped below report back, and must not record the release again.
        view.state = "rolled back";
        view.reason = `canary did not start: ${reason}`;
        for (const h of view.handlers) registry.stopCanary(h.name, `another handler of ${label} did not start`);
        this.#canary = undefined;
        await this.#recordFailed(m, `canary did not start: ${reason}`);
        throw new BundleActivationError(`Cannot run ${label} as a canary: ${reason}`);
      }
    }
    if (!view.handlers.length) {
      this.#canary = undefined;
      return undefined;
    }
    if (view.state === "starting") view.state = "running";
    this.#busy = `${label} runs as a canary`;
    this.#staged = { release: m.release, name: m.name, version: m.version, step: "canary" };
    return view.handlers.map((h) => h.name);
  }

  /** Carry out a canary release's decision: activate the whole bundle, or forget it. */
  async #canaryOutcome(m: _Release, dir: string, promoted: boolean, reason: string, label: string): Promise<void> {
    const registry = this.#registry!;
    try {
      if (!promoted && this.#stopping) {
        // Not the candidate's fault: the release is not marked failed, and a fleet record is tried again.
        this.#log.warn(`${label}: canary interrupted (${reason}); the active release stays`);
        return;
      }
      if (!promoted) {
        this.#log.warn(`${label}: canary rolled back (${reason}); the active release keeps every reading`);
        this.#lastRollback = { release: m.release, to: this.activeRelease, reason: `canary: ${reason}`, ms: 0, at: new Date().toISOString() };
        await this.#recordFailed(m, `canary rolled back: ${reason}`);
        return;
      }
      const t0 = Date.now();
      this.#staged = { release: m.release, name: m.name, version: m.version, step: "switching" };
      const failures = await registry.switchDirectory(dir, { watch: false });
      if (failures.length) {
        const why = failures.map((f) => `${f.name}: ${f.message}`).join("; ");
        await this.#recordFailed(m, `handlers did not load after the canary: ${why}`);
        if (registry.dir === dir) await this.#rollback(m.release, `handlers did not start: ${why}`, t0);
        return;
      }
      // The canary stood in for probation: the release is committed at once.
      const ref: ReleaseRef = { release: m.release, name: m.name, version: m.version, activatedAt: new Date().toISOString(), signers: m.signers };
      this.#state = { ...this.#state, active: ref, previous: this.#state.active ?? _WORKERS, probation: null };
      await this.#store.write(this.#state);
      const ms = Date.now() - t0;
      this.#lastActivation = { release: m.release, ms, at: ref.activatedAt };
      this.#log.info(`${label} promoted after its canary (${reason}); active, switched in ${ms} ms`);
      await this.#store.cleanup([this.#state.active?.release ?? 0, this.#state.previous?.release ?? 0].filter((n) => n > 0));
    } finally {
      this.#busy = undefined;
      this.#staged = null;
    }
  }

  #canaryView(): BundleCanaryView | null {
    const c = this.#canary;
    if (!c) return null;
    const v = structuredClone(c.view);
    for (const h of v.handlers) if (!h.decided) h.canary = this.#registry?.canaryView(h.name) ?? h.canary;
    return v;
  }

  /** `GET /v1/bundles`. */
  view(): BundlesView {
    const p = this.#probation;
    const t = p?.tally();
    const pol = this.#o.probation;
    return {
      active: this.#viewOf(this.#state.active ?? _WORKERS),
      previous: this.#state.previous ? this.#viewOf(this.#state.previous) : null,
      staged: this.#staged ? { ...this.#staged } : null,
      probation: p && t
        ? { release: p.release, since: new Date(p.since).toISOString(), ...t, windowMs: pol.ms, windowMessages: pol.messages, failurePct: pol.failurePct }
        : null,
      failed: [...this.#state.failed],
      trust: { keys: this.#o.trust.keys.map((k) => k.id), threshold: this.#o.trust.threshold },
      lastActivation: this.#lastActivation,
      lastRollback: this.#lastRollback,
      fleet: this.fleetView?.() ?? null,
      canary: this.#canaryView(),
    };
  }

  /** Stop judging (host shutdown); a release on probation stays on probation in the pointer. */
  stop(): void {
    this.#stopping = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #startProbation(release: number): void {
    const registry = this.#registry!;
    for (const r of registry.runners()) r.holdDeadLetters(true);
    const p = new Probation(release, this.#o.probation, () => registry.runners());
    this.#probation = p;
    this.#timer = setInterval(() => {
      if (this.#busy) return;
      const v = p.check();
      if (v.type === "pending") return;
      clearInterval(this.#timer);
      this.#timer = undefined;
      const done = v.type === "commit" ? this.#commit(p, v.handled, v.failed) : this.#rollback(p.release, v.reason, Date.now());
      done.catch((e: Error) => this.#log.error(`release ${p.release}: ${e.message}`));
    }, _CHECK_MS);
  }

  async #commit(p: Probation, handled: number, failed: number): Promise<void> {
    this.#busy = `release ${p.release} is being committed`;
    try {
      this.#probation = undefined;
      this.#state = { ...this.#state, probation: null };
      await this.#store.write(this.#state);
      for (const r of this.#registry!.runners()) r.holdDeadLetters(false);
      this.#log.info(`release ${p.release} committed after probation: ${handled} messages, ${failed} failed, ${Date.now() - p.since} ms`);
      await this.#store.cleanup([this.#state.active?.release ?? 0, this.#state.previous?.release ?? 0].filter((n) => n > 0));
    } finally {
      this.#busy = undefined;
    }
  }

  async #rollback(release: number, reason: string, detectedAt: number): Promise<void> {
    const registry = this.#registry!;
    this.#busy = `release ${release} is being rolled back`;
    this.#probation = undefined;
    try {
      const back = this.#state.active?.release === release ? (this.#state.previous ?? _WORKERS) : (this.#state.active ?? _WORKERS);
      this.#log.error(`release ${release} failed: ${reason}; rolling back to ${back.release ? `release ${back.release}` : "the --workers directory"}`);
      const failures = await registry.switchDirectory(this.#dirOf(back), { watch: back.release === 0 && this.#o.watch, quietMs: this.#o.quietMs });
      if (failures.length) this.#log.error(`rollback: ${failures.map((f) => `${f.name}: ${f.message}`).join("; ")}`);
      const bad = this.#state.active?.release === release ? this.#state.active : null;
      this.#state = {
        active: back.release ? back : null,
        previous: null,
        probation: null,
        failed: bad ? _addFailed(this.#state.failed, { release, name: bad.name, version: bad.version, reason, at: new Date().toISOString() }) : this.#state.failed,
      };
      const ms = Date.now() - detectedAt;
      this.#lastRollback = { release, to: back.release, reason, ms, at: new Date().toISOString() };
      await this.#store.write(this.#state);
      for (const r of registry.runners()) r.holdDeadLetters(false);
      this.#log.warn(`release ${release} rolled back to ${back.release || "--workers"} in ${ms} ms`);
      await this.#store.cleanup([back.release].filter((n) => n > 0));
    } finally {
      this.#busy = undefined;
    }
  }

  async #recordFailed(m: { release: number; name: string; version: string }, reason: string): Promise<void> {
    this.#state = { ...this.#state, failed: _addFailed(this.#state.failed, { ...m, reason, at: new Date().toISOString() }) };
    await this.#store.write(this.#state);
    await this.#store.cleanup([this.#state.active?.release ?? 0, this.#state.previous?.release ?? 0].filter((n) => n > 0));
  }

  #dirOf(ref: ReleaseRef | null): string {
    return ref && ref.release > 0 ? this.#store.handlersDir(ref.release) : resolve(this.#o.workersDir);
  }

  #viewOf(ref: ReleaseRef): ReleaseView {
    return { ...ref, source: ref.release > 0 ? "bundle" : "workers", dir: this.#dirOf(ref) };
  }

  async #step(what: string): Promise<void> {
    this.#log.info(`bundle step: ${what}`);
    if (this.#o.stepDelayMs) await new Promise((r) => setTimeout(r, this.#o.stepDelayMs));
  }
}

type _Release = { release: number; name: string; version: string; signers: string[] };

const _WORKERS: ReleaseRef = { release: 0, name: "workers", version: "-", activatedAt: "", signers: [] };

function _addFailed(list: FailedRelease[], f: FailedRelease): FailedRelease[] {
  return [...list.filter((x) => x.release !== f.release), f].slice(-20);
}

/** A canary release not decided yet. */
function _live(state: BundleCanaryView["state"]): boolean {
  return state === "starting" || state === "running";
}
