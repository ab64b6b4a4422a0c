import { readdir } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { readFile, rename, writeFile } from "node:fs/promises";
import { isHandlerFile } from "../bundler/handler_files.ts";
import type { StoredReading, StoreRequest, TopicRoute } from "../ingest/store.ts";
import { ProblemError } from "../http/problem.ts";
import type { ReadingIssue } from "../sandbox/protocol.ts";
import type { Broker } from "../broker/connect.ts";
import type { TraceContext } from "../util/trace.ts";
import { HandlerRunner, type HandlerCounts, type HandlerMetrics, type HandlerStatus, type RunnerFaults, type RunnerPolicy } from "../dispatch/runner.ts";
import type { Logger } from "../util/log.ts";
import type { Validator } from "../schemas/validator.ts";
import { decodeCbor, scanCbor } from "../codec/cbor.ts";
import { ensureRecordStream } from "../record/streams.ts";
import { STREAMS } from "../broker/streams.ts";
import { ShadowSession, type ShadowLimits, type ShadowVerdict, type ShadowView } from "../release/shadow.ts";
import { CanarySession, type CanaryPolicy, type CanaryView } from "../release/canary.ts";
import { ingestSubject, patternOf, subjectMatches } from "../broker/subjects.ts";
import { watchDir, type DirWatch } from "../runtime/watch.ts";
import { buildHandler } from "../bundler/bundle.ts";
import { isTopic } from "../sdk/definition.ts";


/** One row of `GET /v1/handlers`. */
export interface HandlerView {
  name: string;
  file: string;
  version: string | null;
  status: HandlerStatus;
  topic: string | null;
  subjects: string[];
  isolation: "worker" | "wasm";
  consumer: string | null;
  inFlight: number;
  counts: HandlerCounts;
  limits: { timeoutMs: number; concurrency: number; maxAttempts: number; memoryMb: number; memoryEnforced: boolean } | null;
  sandboxed: boolean;
  /** Where ingest checks readings against its schema: `host` (a data-only schema), `isolate` (the schema isolate), `wasm` (its QuickJS sandbox); null without a schema. */
  schemaCheck: "host" | "isolate" | "wasm" | null;
  loadedAt: string | null;
  /** The last runtime problem (crash, timeout restart). */
  lastError: string | null;
  /** The last version that was refused (build or load failure); the running version, if any, kept running. */
  loadError: { message: string; at: string } | null;
  /** Versions replaced by a later one since start. */
  swaps: number;
  /** The last swap: versions, when, and the pause between the old version's last ack and the new one's first. */
  lastSwap: { from: string; to: string; at: string; pauseMs: number | null } | null;
  /** A candidate running in shadow beside this version (the last one, once it finished). */
  shadow: ShadowView | null;
  /** A canary of a new version taking a share of the readings (the last one, once decided). */
  canary: CanaryView | null;
}


interface _Entry {
  name: string;
  file: string;
  runner: HandlerRunner | undefined;
  loadError: { message: string; at: Date } | undefined;
  swaps: number;
  lastSwap: { from: string; to: string; at: Date; oldLastAck: number | undefined; next: HandlerRunner } | undefined;
  /** Operations on one handler run one after another. */
  chain: Promise<void>;
  /** A shadow run beside the active version, and its runner while it runs. */
  shadow?: { session: ShadowSession; runner: HandlerRunner | undefined } | undefined;
  /** A canary in the active runner, and the candidate's source to promote. */
  canary?: { session: CanarySession; source: string; promote: boolean } | undefined;
}

/**
 * The handlers of a directory: builds each, loads it in its isolate, registers its schema with
 * the schema isolate and starts its consumer. One broken handler never stops the others.
 */
export class HandlerRegistry {
  #dir: string;
  #bundleDir: string;
  #broker: Broker;
  #validator: Validator;
  #log: Logger;
  #entries = new Map<string, _Entry>();
  #isolation: "auto" | "wasm";
  #faults: RunnerFaults;
  #watch: DirWatch | undefined;
  #policy: RunnerPolicy;
  #metrics: HandlerMetrics | undefined;

  #store: (req: StoreRequest) => Promise<StoredReading[]>;
  /** Topics recorded whatever their definitions say (`--record`). */
  #recorded: Set<string>;
  /** {@link route} per topic asked, for the running set of versions. */
  #routes = new Map<string, TopicRoute | undefined>();
  #recordBudget: number;

  /**
   * @param opts.store the one path that stores readings (ingest's), which `ctx.emit` takes too
   */
  constructor(opts: {
    dir: string; bundleDir: string; broker: Broker; validator: Validator; log: Logger; policy?: RunnerPolicy;
    store: (req: StoreRequest) => Promise<StoredReading[]>;
    /** `"wasm"`: every handler runs in the wasm tier, whatever its definition asks (`--isolation`). */
    isolation?: "auto" | "wasm" | undefined;
    /** Fault injection for crash tests, handed to every handler. */
    faults?: RunnerFaults | undefined;
    /** Where every handler counts its outcomes (/metrics). */
    metrics?: HandlerMetrics | undefined;
    /** Topics recorded by the operator (`--record`), and the bytes all recordings may take. */
    recording?: { topics: readonly string[]; budget: number } | undefined;
  }) {
    this.#recorded = new Set(opts.recording?.topics ?? []);
    this.#recordBudget = opts.recording?.budget ?? 64 * 1024 * 1024;
    this.#metrics = opts.metrics;
    this.#isolation = opts.isolation ?? "auto";
    this.#faults = opts.faults ?? {};
    this.#policy = opts.policy ?? {};
    this.#store = opts.store;
    this.#dir = resolve(opts.dir);
    this.#bundleDir = opts.bundleDir;
    this.#broker = opts.broker;
    this.#validator = opts.validator;
    this.#log = opts.log;
  }

  /**
   * Watch the directory: a new file loads, a changed file is rebuilt and swapped blue/green,
   * a removed file's handler drains and stops.
   */
  async watch(quietMs = 50): Promise<void> {
    // A raw wasm handler's manifest (`name.json` beside `name.wasm`) reloads its module.
    const manifest = (f: string) => f.endsWith(".json") && !f.startsWith(".") && !f.startsWith("_");
    // Helpers (`_util.ts`) and data a handler imports: a change reloads every handler whose build read it.
    const source = (f: string) => !f.startsWith(".") && !f.endsWith(".d.ts") && /\.(ts|mts|js|mjs|json)$/.test(f);
    this.#watch = await watchDir(this.#dir, (f) => isHandlerFile(f) || manifest(f) || source(f), (e) => {
      const name = basename(e.file);
      if (isHandlerFile(name)) {
        if (e.type === "changed") void this.load(e.file);
        else void this.remove(e.file);
        return;
      }
      if (manifest(name)) {
        const wasm = e.file.replace(/\.json$/, ".wasm");
        if (this.#entries.get(_nameOf(wasm))?.runner) void this.load(wasm);
      }
      const changed = resolve(e.file);
      for (const entry of this.#entries.values()) {
        if (entry.runner?.built.inputs?.includes(changed)) {
          this.#log.info(`${name} changed: reloading handler ${entry.name}, which imports it`);
          void this.load(entry.file);
        }
      }
    }, { quietMs });
  }

  /** Load every handler file in the directory. */
  /** A host killed during a shadow run left its consumer: remove it, or INGEST keeps every reading for it. */
  async #dropStaleShadows(): Promise<void> {
    try {
      for await (const c of this.#broker.jsm.consumers.list(STREAMS.ingest)) {
        if (/-shadow(-hi)?$/.test(c.name)) await this.#broker.jsm.consumers.delete(STREAMS.ingest, c.name).catch(() => false);
      }
    } catch (e) {
      this.#log.warn(`cannot look for consumers of ended shadow runs: ${(e as Error).message}`);
    }
  }

  async loadAll(): Promise<void> {
    await this.#dropStaleShadows();
    let files: string[];
    try {
      files = (await readdir(this.#dir)).filter(isHandlerFile).sort();
    } catch (e) {
      this.#log.warn(`cannot read handler directory ${this.#dir}: ${(e as Error).message}`);
      return;
    }
    if (!files.length) this.#log.warn(`no handlers in ${this.#dir}: ingest knows no topics yet`);
    for (const f of files) await this.load(join(this.#dir, f));
  }

  /**
   * Build and start one handler file, or swap in its new version: the new version must load
   * cleanly in a fresh isolate before the old one stops fetching; the old one's in-flight
   * messages finish (or are nak'd at its timeout); then the new one takes over the same durable
   * consumer. A version that fails is recorded and the running one keeps running.
   */
  load(file: string): Promise<void> {
    return this.#enqueue(file, (e) => this.#apply(e));
  }

  /** Stop a removed file's handler after its in-flight messages finished; its consumer stays. */
  remove(file: string): Promise<void> {
    return this.#enqueue(file, async (e) => {
      const r = e.runner;
      this.#setRunner(e, undefined);
      e.loadError = undefined;
      if (!r) return;
      await r.stop(r.definition.timeoutMs + 1_000);
      this.#validator.unload(this.#schemaKey(r));
      this.#log.info(`handler ${e.name} removed; its consumer ${r.durable} keeps its position`);
    });
  }

  /**
   * Stop watching and stop every handler: in-flight messages get up to `graceMs` (bounded even
   * for handlers with long timeouts) to finish; the rest are nak'd and wait in the stream.
   */
  async stopAll(graceMs = 10_000): Promise<void> {
    this.#watch?.close();
    await Promise.all([...this.#entries.values()].map((e) => e.chain));
    for (const e of this.#entries.values()) if (e.canary?.session.running) e.canary.session.abort("the host stopped");
    // A shadow ends with the host: its consumer goes, so INGEST keeps nothing for it.
    await Promise.all([...this.#entries.values()].map((e) => this.stopShadow(e.name, "the host stopped")));
    await Promise.all(this.runners().map((r) => r.stop(Math.min(r.definition.timeoutMs + 1_000, graceMs))));
  }

  #enqueue(file: string, op: (e: _Entry) => Promise<void>): Promise<void> {
    const name = _nameOf(file);
    let e = this.#entries.get(name);
    if (!e) {
      e = { name, file, runner: undefined, loadError: undefined, swaps: 0, lastSwap: undefined, chain: Promise.resolve() };
      this.#entries.set(name, e);
    }
    const entry = e;
    entry.chain = entry.chain.then(() => op(entry)).catch((err: Error) => this.#log.error(`${name}: ${err.message}`));
    return entry.chain;
  }

  /**
   * Build a handler file and load it in a fresh isolate with its schema, not consuming yet.
   * @returns the new version's runner, or undefined when it is the version already running
   */
  async #prepare(file: string, old: HandlerRunner | undefined): Promise<HandlerRunner | undefined> {
    let next: HandlerRunner | undefined;
    try {
      const built = await buildHandler(file, this.#bundleDir);
      if (old && old.built.hash === built.hash) return undefined;
      next = new HandlerRunner({
        built, broker: this.#broker, log: this.#log, emit: (topic, data, delayMs, trace) => this.#emit(topic, data, delayMs, trace),
        policy: this.#policy, faults: this.#faults, forceWasm: this.#isolation === "wasm", metrics: this.#metrics,
      });
      const info = await next.load();
      if (info.record) {
        if (!info.topic) throw new Error(`Handler ${built.name}: \`record\` needs \`topic\` (a recording is per topic, not per subject pattern)`);
        await ensureRecordStream(this.#broker.jsm, info.topic, info.record, this.#recordBudget, this.#broker.replicas);
      }
      if (info.hasSchema) {
        // A wasm-tier handler's code never runs in a V8 worker: its schema is checked in QuickJS too.
        if (info.isolation === "wasm") await this.#validator.loadWasm(this.#schemaKey(next), built.guestUrl, info);
        else await this.#validator.load(this.#schemaKey(next), built.schemaUrl);
      }
      return next;
    } catch (err) {
      await next?.stop(0).catch(() => {});
      throw err;
    }
  }

  async #apply(e: _Entry): Promise<void> {
    const old = e.runner;
    let next: HandlerRunner | undefined;
    try {
      next = await this.#prepare(e.file, old);
      if (!next) return;
    } catch (err) {
      await next?.stop(0).catch(() => {});
      const message = (err as Error).message;
      e.loadError = { message, at: new Date() };
      this.#log.error(old ? `${message}; version ${old.built.hash} keeps running` : message);
      return;
    }
    const info = next.definition;
    // A shadow compares with the version it started beside; a canary competes with it.
    if (e.shadow?.runner) await this.stopShadow(e.name, "the active version changed");
    if (e.canary?.session.running) e.canary.session.abort("the active version changed");
    if (old) {
      // Blue/green: the new version is loaded; now the old one stops fetching and drains.
      await old.stop(old.definition.timeoutMs + 1_000);
    }
    try {
      await next.run();
    } catch (err) {
      await next.stop(0).catch(() => {});
      e.loadError = { message: `Cannot start consumer for ${e.name}: ${(err as Error).message}`, at: new Date() };
      this.#setRunner(e, undefined);
      this.#log.error(e.loadError.message);
      return;
    }
    this.#setRunner(e, next);
    e.loadError = undefined;
    if (old) {
      // Counted once the new version runs, so /v1/handlers never shows a swap with the old version.
      e.swaps++;
      e.lastSwap = { from: old.built.hash, to: next.built.hash, at: new Date(), oldLastAck: old.stats().lastAckAt, next };
    }
    if (old?.definition.hasSchema) this.#validator.unload(this.#schemaKey(old));
    this.#log.info(
      `${old ? `swapped handler ${e.name} ${old.built.hash} → ${next.built.hash}` : `loaded handler ${e.name} (${next.built.hash})`} ` +
        `on ${info.subjects.join(", ")}; concurrency ${info.concurrency}, timeout ${info.timeoutMs} ms, ${info.maxAttempts} attempts`,
    );
  }

  /** The directory handlers are loaded from. */
  get dir(): string {
    return this.#dir;
  }

  /**
   * Point the registry at another directory (an OTA release, or back to `--workers`) in one step.
   * Every handler file there is built and loaded in a fresh isolate first; if one fails, nothing
   * changes and the failures are returned. Otherwise every handler that changes or goes away stops
   * fetching and drains (its in-flight messages finish on the version that took them), then every
   * new version starts consuming: no message is handled while the set is half updated.
   * @param dir the new handler directory
   * @param opts `watch` it afterwards (release directories are immutable: no), with `quietMs`
   * @returns the handlers that failed to load; empty when the switch happened
   */
  async switchDirectory(dir: string, opts: { watch?: boolean; quietMs?: number } = {}): Promise<{ name: string; message: string }[]> {
    const abs = resolve(dir);
    const files = (await readdir(abs).catch(() => [] as string[])).filter(isHandlerFile).sort().map((f) => join(abs, f));
    await Promise.all([...this.#entries.values()].map((e) => e.chain));
    const ready: { name: string; file: string; next: HandlerRunner | undefined }[] = [];
    const failures: { name: string; message: string }[] = [];
    for (const file of files) {
      const name = _nameOf(file);
      try {
        ready.push({ name, file, next: await this.#prepare(file, this.#entries.get(name)?.runner) });
      } catch (err) {
        failures.push({ name, message: (err as Error).message });
      }
    }
    if (failures.length) {
      for (const r of ready) if (r.next) await this.#discard(r.next);
      return failures;
    }
    this.#watch?.close();
    this.#watch = undefined;
    const names = new Set(ready.map((r) => r.name));
    const leaving = [...this.#entries.values()].filter((e) => e.runner && (!names.has(e.name) || ready.some((r) => r.name === e.name && r.next)));
    await Promise.all(leaving.map((e) => e.runner!.stop(e.runner!.definition.timeoutMs + 1_000)));
    for (const e of this.#entries.values()) {
      if (names.has(e.name)) continue;
      if (e.runner?.definition.hasSchema) this.#validator.unload(this.#schemaKey(e.runner));
      this.#setRunner(e, undefined);
      e.loadError = undefined;
    }
    for (const r of ready) {
      let e = this.#entries.get(r.name);
      if (!e) {
        e = { name: r.name, file: r.file, runner: undefined, loadError: undefined, swaps: 0, lastSwap: undefined, chain: Promise.resolve() };
        this.#entries.set(r.name, e);
      }
      e.file = r.file;
      if (!r.next) continue;
      const old = e.runner;
      try {
        await r.next.run();
      } catch (err) {
        await this.#discard(r.next);
        this.#setRunner(e, undefined);
        e.loadError = { message: `Cannot start consumer for ${e.name}: ${(err as Error).message}`, at: new Date() };
        failures.push({ name: e.name, message: e.loadError.message });
        continue;
      }
      this.#setRunner(e, r.next);
      e.loadError = undefined;
      if (old) {
        e.swaps++;
        e.lastSwap = { from: old.built.hash, to: r.next.built.hash, at: new Date(), oldLastAck: old.stats().lastAckAt, next: r.next };
        if (old.definition.hasSchema) this.#validator.unload(this.#schemaKey(old));
      }
    }
    this.#dir = abs;
    if (opts.watch) await this.watch(opts.quietMs ?? 50);
    this.#log.info(`handlers now from ${abs}: ${[...names].join(", ") || "(none)"}`);
    return failures;
  }

  async #discard(r: HandlerRunner): Promise<void> {
    await r.stop(0).catch(() => {});
    if (r.definition.hasSchema) this.#validator.unload(this.#schemaKey(r));
  }

  /** Every change of a running version goes through here: the routes of the old set are gone. */
  #setRunner(e: _Entry, r: HandlerRunner | undefined): void {
    e.runner = r;
    this.#routes.clear();
  }

  /** The running handlers. */
  runners(): HandlerRunner[] {
    return [...this.#entries.values()].flatMap((e) => (e.runner ? [e.runner] : []));
  }

  /** Handler files with no running version (they failed to load). */
  failedCount(): number {
    return [...this.#entries.values()].filter((e) => !e.runner && e.loadError).length;
  }

  /**
   * What a reading posted to `topic` must satisfy; undefined when no handler consumes it.
   * @param topic the topic of `POST /v1/ingest/:topic`
   */
  route(topic: string): TopicRoute | undefined {
    // Asked on every ingest request: kept per topic until the set of running versions changes.
    if (this.#routes.has(topic)) return this.#routes.get(topic);
    const route = this.#route(topic);
    if (this.#routes.size >= _MAX_ROUTES) this.#routes.clear();
    this.#routes.set(topic, route);
    return route;
  }

  #route(topic: string): TopicRoute | undefined {
    const consumers = this.consumersOf(topic);
    if (!consumers.length) return undefined;
    return {
      schemaKeys: consumers.filter((r) => r.definition.hasSchema).map((r) => this.#schemaKey(r)),
      idField: consumers.map((r) => r.definition.idField).find((f) => f !== undefined),
      senml: consumers.map((r) => r.definition.senml).find((f) => f !== undefined),
      record: this.#recorded.has(topic) || consumers.some((r) => r.definition.record !== undefined && r.definition.topic === topic),
      // High-priority lanes only where every consumer of the topic has one.
      priority: consumers.every((r) => r.definition.priority)
        ? { field: consumers.map((r) => r.definition.priority?.field).find((f) => f !== undefined) }
        : undefined,
    };
  }

  /** The running handlers that consume `topic`. */
  consumersOf(topic: string): HandlerRunner[] {
    const subject = ingestSubject(topic);
    return this.runners().filter((r) => r.definition.subjects.some((s) => subjectMatches(s, subject)));
  }

  /** Topics (or subject patterns) some handler consumes, for error messages. */
  topics(): string[] {
    const t = new Set<string>();
    for (const r of this.runners()) for (const s of r.definition.subjects ?? []) t.add(patternOf(s));
    return [...t].sort();
  }

  /** Every handler, loaded or failed. */
  /**
   * Run a candidate version of handler `name` in shadow beside its active version, until `limits`.
   * @param file the candidate's source
   * @throws Error when the handler is not running, a shadow runs already, or the candidate does not load
   */
  async startShadow(name: string, file: string, limits: ShadowLimits, onVerdict?: (v: ShadowVerdict) => void): Promise<ShadowView> {
    const e = this.#entries.get(name);
    const active = e?.runner;
    if (!e || !active) throw Object.assign(new Error(`No handler named ${name} is running`), { status: 404 });
    if (e.shadow && !e.shadow.session.ended) throw Object.assign(new Error(`A shadow of ${name} runs already; stop it first`), { status: 409 });
    const built = await buildHandler(file, join(this.#bundleDir, "shadow"));
    const session = new ShadowSession(built.hash, limits, {
      judged: (v) => onVerdict?.(v),
      limit: (reason) => void this.stopShadow(name, reason),
    });
    const taps = session.taps();
    const runner = new HandlerRunner({
      built: { ...built, name }, broker: this.#broker, log: this.#log.child("shadow"), emit: async () => {},
      policy: this.#policy, forceWasm: this.#isolation === "wasm", shadow: taps.shadow,
    });
    try {
      const info = await runner.load();
      const want = active.definition.subjects.join(",");
      if (info.subjects.join(",") !== want) throw new Error(`The candidate consumes ${info.subjects.join(", ")}, the active version ${want}: a shadow must see the same readings`);
      await runner.run();
    } catch (err) {
      await runner.stop(0).catch(() => {});
      await runner.deleteConsumers();
      session.end("did not start");
      throw Object.assign(new Error(`The candidate does not run: ${(err as Error).message}`), { status: 400 });
    }
    active.tap = taps.active;
    e.shadow = { session, runner };
    this.#log.info(`shadow of ${name}: candidate ${built.hash} beside ${active.built.hash}, until ${limits.readings} readings or ${limits.ms} ms`);
    return session.view();
  }

  /**
   * Release a new version of handler `name` as a canary: it takes `policy.share` of the readings
   * until the budget promotes it (its file replaces the handler's, swapped in as a drop-in) or
   * rolls it back.
   * @param file the candidate's source
   * @param opts.promote false: a promoted canary only ends (an OTA release promotes the whole bundle)
   * @throws Error with `status` 404 (no such handler), 409 (a canary runs), 400 (the candidate does
   *   not run; `same: true` when it is the version running)
   */
  async startCanary(name: string, file: string, policy: CanaryPolicy, onDecided?: (promoted: boolean, reason: string) => void, opts: { promote?: boolean } = {}): Promise<CanaryView> {
    const e = this.#entries.get(name);
    const active = e?.runner;
    if (!e || !active) throw Object.assign(new Error(`No handler named ${name} is running`), { status: 404 });
    if (e.canary?.session.running) throw Object.assign(new Error(`A canary of ${name} runs already; stop it first`), { status: 409 });
    const built = await buildHandler(file, join(this.#bundleDir, "canary"));
    if (built.hash === active.built.hash) throw Object.assign(new Error(`The candidate is the version running (${built.hash})`), { status: 400, same: true });
    const session = new CanarySession(built.hash, active.built.hash, policy, (promoted, reason) => {
      // Told once the decision is carried out (the canary's isolate has finished what it held).
      void this.#decided(name, active, promoted, reason)
        .catch((err: Error) => this.#log.error(`canary of ${name}: ${err.message}`))
        .finally(() => onDecided?.(promoted, reason));
    });
    try {
      await active.startCanary(built, policy.share, { result: (v, r) => session.result(v, r), crashed: (reason) => session.crashed(reason) });
    } catch (err) {
      // Its clock would otherwise decide later, and end whatever canary runs then.
      session.dispose();
      throw Object.assign(new Error(`The candidate does not run: ${(err as Error).message}`), { status: 400 });
    }
    e.canary = { session, source: file, promote: opts.promote !== false };
    this.#log.info(`canary of ${name}: ${built.hash} takes ${Math.round(policy.share * 1000) / 10} % of the readings beside ${active.built.hash}`);
    return session.view();
  }

  /** The canary of handler `name`, running or the last one. */
  canaryView(name: string): CanaryView | undefined {
    return this.#entries.get(name)?.canary?.session.view();
  }

  /** End a canary by hand: rolled back. */
  stopCanary(name: string, reason = "stopped by the operator"): CanaryView | undefined {
    const e = this.#entries.get(name);
    if (!e?.canary) return undefined;
    e.canary.session.abort(reason);
    return e.canary.session.view();
  }

  async #decided(name: string, runner: HandlerRunner, promoted: boolean, reason: string): Promise<void> {
    const e = this.#entries.get(name);
    if (!promoted || !e?.canary) {
      await runner.endCanary();
      this.#log.warn(`canary of ${name} rolled back: ${reason}`);
      return;
    }
    if (!e.canary.promote) {
      await runner.endCanary();
      this.#log.info(`canary of ${name} within budget: ${reason}`);
      return;
    }
    // Promoted: the candidate replaces the handler's file in one rename (a crash leaves either
    // version, never half of one), then swaps in blue/green as a drop-in does.
    const tmp = join(dirname(e.file), `.${basename(e.file)}.canary`);
    await writeFile(tmp, await readFile(e.canary.source));
    await rename(tmp, e.file);
    await runner.endCanary();
    this.#log.info(`canary of ${name} promoted: ${reason}`);
    await this.load(e.file);
  }

  /** End a shadow run: its runner stops, its consumer goes; the comparison stays visible. */
  async stopShadow(name: string, reason = "stopped by the operator"): Promise<ShadowView | undefined> {
    const e = this.#entries.get(name);
    const sh = e?.shadow;
    if (!e || !sh) return undefined;
    sh.session.end(reason);
    if (e.runner?.tap) e.runner.tap = undefined;
    const r = sh.runner;
    sh.runner = undefined;
    if (r) {
      await r.stop(1_000).catch(() => {});
      await r.deleteConsumers();
      this.#log.info(`shadow of ${name} ended (${reason}): ${JSON.stringify(sh.session.view().counts)}`);
    }
    return sh.session.view();
  }

  view(): HandlerView[] {
    const rows: HandlerView[] = [];
    for (const e of this.#entries.values()) {
      const r = e.runner;
      if (!r && !e.loadError) continue; // still loading for the first time
      const swap = e.lastSwap;
      const firstAck = swap?.next.stats().firstAckAt;
      const st = r?.stats();
      const d = r?.definition;
      rows.push({
        name: e.name,
        file: r?.built.file ?? e.file,
        version: r?.built.hash ?? null,
        status: st?.status ?? "failed",
        topic: d?.topic ?? null,
        subjects: d?.subjects ?? [],
        isolation: d?.isolation ?? "worker",
        consumer: r?.durable ?? null,
        inFlight: st?.inFlight ?? 0,
        counts: st?.counts ?? { acked: 0, failed: 0, retried: 0, deadLettered: 0, crashes: 0, deduped: 0 },
        limits: d && st
          ? { timeoutMs: d.timeoutMs, concurrency: d.concurrency, maxAttempts: d.maxAttempts, memoryMb: d.memoryMb, memoryEnforced: st.heapLimitEnforced }
          : null,
        sandboxed: st?.sandboxed ?? false,
        schemaCheck: !r || !d?.hasSchema ? null : d.isolation === "wasm" ? "wasm" : this.#validator.checkedInHost(this.#schemaKey(r)) ? "host" : "isolate",
        loadedAt: st?.loadedAt?.toISOString() ?? null,
        lastError: st?.lastError ?? null,
        loadError: e.loadError ? { message: e.loadError.message, at: e.loadError.at.toISOString() } : null,
        swaps: e.swaps,
        shadow: e.shadow?.session.view() ?? null,
        canary: e.canary?.session.view() ?? null,
        lastSwap: swap
          ? {
            from: swap.from,
            to: swap.to,
            at: swap.at.toISOString(),
            pauseMs: firstAck !== undefined && swap.oldLastAck !== undefined ? firstAck - swap.oldLastAck : null,
          }
          : null,
      });
    }
    return rows.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * `ctx.emit`: through the same store path as ingest (schemas, back-pressure, ids, priority, the
   * delayed budget); a refusal is an error the handler sees.
   */
  async #emit(topic: string, data: Uint8Array, delayMs?: number, trace?: TraceContext): Promise<void> {
    const route = isTopic(topic) ? this.route(topic) : undefined;
    if (!route) {
      throw new Error(`ctx.emit: no handler consumes topic ${JSON.stringify(topic)}; known topics: ${this.topics().join(", ") || "(none)"}`);
    }
    scanCbor(data, false); // the bytes come from an isolate: check them like any untrusted CBOR
    try {
      await this.#store({ topic, route, readings: [decodeCbor(data)], raw: [data], notBefore: delayMs && delayMs > 0 ? Date.now() + delayMs : undefined, trace });
    } catch (e) {
      if (!(e instanceof ProblemError)) throw e;
      const issue = e.code === "invalid_reading" ? (e.extra.issues as ReadingIssue[] | undefined)?.[0] : undefined;
      throw new Error(issue
        ? `ctx.emit: the reading does not match the schema of ${topic}: ${issue.path ? `${issue.path}: ` : ""}${issue.message}`
        : `ctx.emit: ${e.message}`);
    }
  }

  #schemaKey(r: HandlerRunner): string {
    return `${r.built.name}@${r.built.hash}`;
  }
}

/** Topics whose route is kept at once (unknown topics included: any sensor can name one). */
const _MAX_ROUTES = 1_024;

function _nameOf(file: string): string {
  const base = file.split("/").pop() ?? file;
  return base.slice(0, base.length - extname(base).length);
}
