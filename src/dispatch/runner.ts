import { AckPolicy, DeliverPolicy, JetStreamApiError, type Consumer, type JsMsg } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import type { Broker } from "../broker/connect.ts";
import { STREAMS } from "../broker/streams.ts";
import { isPublishSubject, outboxSubject, priorityFilter, SENSOR_HEADER, topicOf } from "../broker/subjects.ts";
import { HandlerLoadError, HandlerTimeoutError, IsolateCrashedError, toErrorData, type ErrorData } from "../errors.ts";
import { DEFAULTS, WASM_DEFAULTS, type HandlerInfo } from "../sdk/definition.ts";
import type { BuiltHandler } from "../bundler/bundle.ts";
import type { Logger, LogFields } from "../util/log.ts";
import { childSpan, formatTraceparent, parseTraceparent, TRACEPARENT_HEADER, traceIdOf, TRACESTATE_HEADER, type TraceContext } from "../util/trace.ts";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { HandlerError, type Invocation, type Isolate } from "../sandbox/isolate.ts";
import { mapErrorData } from "../sandbox/source_map.ts";
import type { OutputLimits } from "../sandbox/budget.ts";
import { selectIsolate } from "../sandbox/select.ts";
import { workerPermissionsMatter } from "../runtime/worker.ts";
import { decodeCbor } from "../codec/cbor.ts";
import { backoffDelay } from "./backoff.ts";
import { Batcher } from "./batcher.ts";
import { dedupeKey, DedupeStore } from "./dedupe.ts";
import { deadLetter } from "../dlq/dead_letter.ts";
import { Fetcher } from "./fetcher.ts";
import { Slots } from "./slots.ts";
import { TokenBucket } from "./token_bucket.ts";

/** Stores a reading emitted by a handler into INGEST under a topic, now or after `delayMs`. */
export type EmitFn = (topic: string, data: Uint8Array, delayMs?: number, trace?: TraceContext) => Promise<void>;

/** What the operator bounds for every handler, whatever its definition says. */
export interface RunnerPolicy {
  /** Caps on outputs and log lines per message. */
  limits?: OutputLimits | undefined;
  /** Largest `memoryMb` a definition may ask for (`--max-handler-memory`). */
  maxMemoryMb?: number | undefined;
}

/** Fault injection for crash tests. */
export interface RunnerFaults {
  /** Wait this long between a success and its ack. */
  ackDelayMs?: number;
}

/** Everything a {@link HandlerRunner} is made of. */
export interface RunnerOptions {
  built: BuiltHandler;
  broker: Broker;
  log: Logger;
  /** Stores a reading the handler emits (the registry checks topic and schema first). */
  emit: EmitFn;
  /** The operator's bounds on every handler (caps per message, memory ceiling). */
  policy?: RunnerPolicy | undefined;
  /** The operator requires the wasm tier for every handler (`--isolation wasm`). */
  forceWasm?: boolean | undefined;
  faults?: RunnerFaults | undefined;
  /** Where outcomes are counted for /metrics (they outlive a version: a swap keeps counting). */
  metrics?: HandlerMetrics | undefined;
  /**
   * Run as a shadow: a durable consumer of its own from now on, outputs handed to `tap` and never
   * stored, every outcome acked (no retry, no DLQ, no dedupe keys remembered).
   */
  shadow?: RunnerTap | undefined;
}

/** A canary version inside a runner: a share of the readings, chosen stably by reading id. */
export interface CanaryHooks {
  /** One attempt of a reading ended on `version`: acked, failed (and whether that sent it to DLQ), after `ms`. */
  result(version: "active" | "canary", r: { ok: boolean; deadLettered: boolean; ms: number }): void;
  /** The canary's isolate died. */
  crashed(reason: string): void;
}

interface _Canary {
  built: BuiltHandler;
  info: HandlerInfo;
  iso: Isolate;
  /** 0..1: the share of readings (by id) it takes. */
  share: number;
  inFlight: number;
  hooks: CanaryHooks;
}

/** Where a reading falls in 0..1, from its message id (or sequence): the same on every delivery. */
export function canaryPoint(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  // FNV-1a alone puts ids that differ in their last character (sequences 41, 42, …) close
  // together: murmur3's finaliser spreads them over 0..1.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 0x100000000;
}

/** Where a runner reports each reading's outputs and outcome (shadow runs compare them). */
export interface RunnerTap {
  /** An output of the reading stored at INGEST sequence `seq`. */
  output(seq: number, op: "publish" | "emit", subject: string, data: Uint8Array): void;
  /** The reading's first attempt ended: acked, or failed (`error`), after `ms`. */
  done(seq: number, outcome: { ok: boolean; error?: string; ms: number }): void;
}

/** What a runner reports to the host's metrics. */
export interface HandlerMetrics {
  /** One message ended (`seconds`: how long the handler took, when it ran). */
  outcome(handler: string, outcome: "acked" | "retried" | "dead_lettered" | "deduped" | "failed", seconds?: number, detail?: LogFields): void;
  /** The isolate died and is being restarted. */
  restart(handler: string): void;
}

/** What {@link HandlerRunner.stats} reports. */
export interface RunnerStats {
  status: HandlerStatus;
  counts: HandlerCounts;
  inFlight: number;
  lastError: string | undefined;
  loadedAt: Date | undefined;
  firstAckAt: number | undefined;
  lastAckAt: number | undefined;
  /** Whether `memoryMb` is really enforced. */
  heapLimitEnforced: boolean;
  /** Whether the handler runs without ambient authority. */
  sandboxed: boolean;
  /** Bytes the isolate holds, where the runtime can tell (the wasm tier's linear memory). */
  memoryBytes: number | undefined;
}

/** Where a handler stands. */
export type HandlerStatus = "loading" | "running" | "restarting" | "crashing" | "failed" | "stopped";

/** Counters shown in `/v1/handlers`. */
export interface HandlerCounts {
  acked: number;
  failed: number;
  retried: number;
  deadLettered: number;
  crashes: number;
  /** Readings skipped because their dedupe key was handled before. */
  deduped: number;
}

const _CRASH_WINDOW_MS = 60_000;

/**
 * Runs one handler: its isolate, its durable pull consumer and the fetch loop that never pulls
 * more messages than it has free slots for. Ack on success, nak with backoff on failure,
 * DLQ then ack after the last attempt.
 */
export class HandlerRunner {
  readonly built: BuiltHandler;
  #status: HandlerStatus = "loading";
  #info: HandlerInfo | undefined;
  #lastError: string | undefined;
  #loadedAt: Date | undefined;
  /** Wall-clock ms of the first and the latest ack by this version (swap pause, cold start). */
  #firstAckAt: number | undefined;
  #lastAckAt: number | undefined;
  #counts: HandlerCounts = { acked: 0, failed: 0, retried: 0, deadLettered: 0, crashes: 0, deduped: 0 };
  #broker: Broker;
  #log: Logger;
  #isolate: Isolate | undefined;
  #inFlight = 0;
  #slots: Slots | undefined;
  #bucket: TokenBucket | undefined;
  #batcher: Batcher | undefined;
  #dedupe: DedupeStore | undefined;
  /** Dedupe keys claimed by messages in flight (released when one is dead-lettered). */
  #claims = new Map<number, string>();
  #stopping = false;
  #fetcher: Fetcher | undefined;
  #crashTimes: number[] = [];
  #firstErrors = new Map<number, ErrorData>();
  #up: Promise<void> = Promise.resolve();
  #markUp: () => void = () => {};
  #heapLimitEnforced = false;
  #sandboxed = false;
  #holdDeadLetters = false;
  #emit: EmitFn;
  #metrics: HandlerMetrics | undefined;
  #policy: RunnerPolicy;
  #forceWasm: boolean;
  #faults: RunnerFaults;
  #shadow: RunnerTap | undefined;
  #canary: _Canary | undefined;
  /** Told about the active version's readings while a shadow runs beside it. */
  tap: RunnerTap | undefined;

  constructor(o: RunnerOptions) {
    this.built = o.built;
    this.#broker = o.broker;
    this.#log = o.log.child(o.built.name, { handler: o.built.name });
    this.#emit = o.emit;
    this.#metrics = o.metrics;
    this.#policy = o.policy ?? {};
    this.#forceWasm = o.forceWasm ?? false;
    this.#faults = o.faults ?? {};
    this.#shadow = o.shadow;
  }

  /** The handler's definition, with defaults applied; known once {@link load} resolved. */
  get definition(): HandlerInfo {
    if (!this.#info) throw new TypeError(`Handler ${this.built.name} is not loaded yet`);
    return this.#info;
  }

  /** Whether {@link load} resolved. */
  get loaded(): boolean {
    return this.#info !== undefined;
  }

  /** A snapshot of where the handler stands, for views and decisions. */
  stats(): RunnerStats {
    return {
      status: this.#status,
      counts: { ...this.#counts },
      inFlight: this.#inFlight,
      lastError: this.#lastError,
      loadedAt: this.#loadedAt,
      firstAckAt: this.#firstAckAt,
      lastAckAt: this.#lastAckAt,
      heapLimitEnforced: this.#heapLimitEnforced,
      sandboxed: this.#sandboxed,
      memoryBytes: this.#isolate?.memory?.()?.bytes,
    };
  }

  /**
   * While an OTA release is on probation a message that would go to DLQ is nak'd instead, so the
   * release that rolls back does not take readings with it.
   */
  holdDeadLetters(on: boolean): void {
    this.#holdDeadLetters = on;
  }

  /**
   * Give a canary version a share of this handler's readings: the same consumer and fetch loop, a
   * second isolate. A reading goes to the canary when its point (its id, stable across retries)
   * is below `share`; each delivered reading is handled by exactly one version.
   * @returns the canary's definition
   */
  async startCanary(built: BuiltHandler, share: number, hooks: CanaryHooks): Promise<HandlerInfo> {
    const active = this.definition;
    if (this.#canary) throw new Error(`A canary of ${this.built.name} runs already`);
    if (active.batch) throw new Error(`${this.built.name} handles batches: a canary splits single readings`);
    const make = (info: HandlerInfo | undefined) => selectIsolate(built, info, {
      name: `${this.built.name}~canary`,
      url: built.handlerUrl,
      memoryMb: info?.memoryMb ?? DEFAULTS.memoryMb,
      permissions: info?.permissions,
      limits: this.#policy.limits,
      onLog: (level, msg, inv) => this.#log[level](`[canary] ${msg}`, inv ? { topic: topicOf(inv.subject), seq: inv.seq, attempt: inv.attempt } : undefined),
      onCall: (op, subject, data, opts, inv) => this.#call(op, subject, data, opts?.delayMs, inv),
      onCrash: (reason) => hooks.crashed(reason),
    }, this.#forceWasm);
    let iso = make(undefined);
    let info = await iso.start();
    if (info.isolation === "worker" && (workerPermissionsMatter(info.permissions) || info.memoryMb !== DEFAULTS.memoryMb)) {
      await iso.terminate();
      iso = make(info);
      info = await iso.start();
    }
    if (info.subjects.join(",") !== active.subjects.join(",") || info.batch) {
      await iso.terminate();
      throw new Error(`The canary consumes ${info.subjects.join(", ")}${info.batch ? " in batches" : ""}, the active version ${active.subjects.join(", ")}: a canary must take the same single readings`);
    }
    this.#canary = { built, info, iso, share, inFlight: 0, hooks };
    return info;
  }

  /** The share of readings a canary takes now (0 without one). */
  get canaryShare(): number {
    return this.#canary?.share ?? 0;
  }

  /** Send no more readings to the canary; let what it holds finish (up to its timeout), then stop it. */
  async endCanary(): Promise<void> {
    const c = this.#canary;
    if (!c) return;
    this.#canary = undefined;
    const until = Date.now() + c.info.timeoutMs + 1_000;
    while (c.inFlight > 0 && Date.now() < until) await _sleep(5);
    c.iso.cancelAll();
    await c.iso.terminate().catch(() => {});
    while (c.inFlight > 0) await _sleep(5); // cancelled ones are nak'd: the active version takes them
  }

  /** The durable consumer's name. */
  get durable(): string {
    return `outpost-${this.built.name.replace(/[^A-Za-z0-9_-]/g, "_")}${this.#shadow ? "-shadow" : ""}`;
  }

  /** Delete this runner's consumers (a shadow's, when it ends: INGEST keeps nothing for it). */
  async deleteConsumers(): Promise<void> {
    for (const d of [this.durable, this.durableHigh]) await this.#broker.jsm.consumers.delete(STREAMS.ingest, d).catch(() => false);
  }

  /** Messages being handled right now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Load the handler in its isolate (throws HandlerLoadError) and report its policy.
   * Call {@link run} afterwards to start consuming.
   */
  async load(): Promise<HandlerInfo> {
    this.#isolate = this.#makeIsolate();
    this.#info = await this.#isolate.start();
    const ceiling = this.#policy.maxMemoryMb;
    const asDefault = this.#info.memoryMb === (this.#info.isolation === "wasm" ? WASM_DEFAULTS.memoryMb : DEFAULTS.memoryMb);
    // A default above the ceiling is lowered to it; a definition that asks for more is refused.
    if (ceiling !== undefined && this.#info.memoryMb > ceiling && asDefault) this.#info = { ...this.#info, memoryMb: ceiling };
    if (ceiling !== undefined && this.#info.memoryMb > ceiling) {
      await this.#isolate.terminate();
      throw new HandlerLoadError(
        `Handler ${this.built.name} asks for memoryMb ${this.#info.memoryMb}, above this host's ceiling of ${ceiling} MiB (--max-handler-memory)`,
      );
    }
    // (A wasm-tier sandbox applies its own definition's limits as it loads.)
    if (this.#info.isolation === "worker" && (workerPermissionsMatter(this.#info.permissions) || this.#info.memoryMb !== DEFAULTS.memoryMb)) {
      // Limits and permissions are part of the definition, known only once it loaded (under the
      // defaults, with no permissions): start again with them.
      await this.#isolate.terminate();
      this.#isolate = this.#makeIsolate();
      this.#info = await this.#isolate.start();
    }
    this.#heapLimitEnforced = this.#isolate.heapLimitEnforced;
    this.#sandboxed = this.#isolate.sandboxed;
    this.#loadedAt = new Date();
    return this.#info;
  }

  /** The durable consumer of high-priority readings (when the handler has `priority`). */
  get durableHigh(): string {
    return `${this.durable}-hi`;
  }

  /** Create or update the durable consumer(s) and start fetching. */
  async run(): Promise<void> {
    const info = this.definition;
    const lanes: Consumer[] = [await this.#ensureConsumer(this.durable, info.subjects)];
    if (info.priority) lanes.push(await this.#ensureConsumer(this.durableHigh, info.subjects.map(priorityFilter)));
    if (info.dedupe && !this.#shadow) {
      this.#dedupe = new DedupeStore(this.#broker.jsm, this.#broker.js, this.built.name, info.dedupe.ttlMs, this.#broker.replicas ?? 1);
      await this.#dedupe.open();
    }
    // In batch mode a slot is one reading: `concurrency` batches of `size` may be out at once.
    this.#slots = new Slots(info.concurrency * (info.batch?.size ?? 1), info.priority?.weight ?? 1);
    if (info.rateLimit) this.#bucket = new TokenBucket(info.rateLimit.perSecond, info.rateLimit.burst);
    if (info.batch) this.#batcher = new Batcher(info.batch.size, info.batch.maxWaitMs, (msgs) => void this.#handleBatch(msgs));
    this.#status = "running";
    this.#fetcher = new Fetcher({
      lanes,
      slots: this.#slots,
      bucket: this.#bucket,
      accept: (m) => (this.#batcher ? this.#batcher.add(m) : void this.#handle(m)),
      workingEveryMs: this.#ackWaitMs() / 3,
      log: this.#log,
    });
  }

  /**
   * Stop fetching (the pull under way runs out within a second; what it brings is still handled),
   * let in-flight messages finish for up to `graceMs`, nak the rest, then stop the isolate.
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.#stopping = true;
    this.#markUp();
    // Readings pulled ahead are handled by this version within half the grace, not handed back.
    await this.#fetcher?.stop(graceMs / 2);
    this.#batcher?.flushNow();
    const until = Date.now() + graceMs;
    while (this.#inFlight > 0 && Date.now() < until) await _sleep(10);
    this.#isolate?.cancelAll();
    await this.#isolate?.terminate();
    // A canary still inside ends with its runner (the registry decides about it before this).
    const c = this.#canary;
    this.#canary = undefined;
    c?.iso.cancelAll();
    await c?.iso.terminate().catch(() => {});
    while (this.#inFlight > 0) await _sleep(5); // the failures above are nak'd
    this.#status = "stopped";
  }

  #makeIsolate(): Isolate {
    // The isolate kind follows the definition's `isolation` (see sandbox/wasm_select.ts).
    const iso: Isolate = selectIsolate(this.built, this.#info, {
      name: this.built.name,
      url: this.built.handlerUrl,
      memoryMb: this.#info?.memoryMb ?? DEFAULTS.memoryMb,
      permissions: this.#info?.permissions,
      limits: this.#policy.limits,
      onLog: (level, msg, inv) => this.#log[level](msg, inv ? { topic: topicOf(inv.subject), seq: inv.seq, attempt: inv.attempt } : undefined),
      onCall: (op, subject, data, opts, inv) => this.#call(op, subject, data, opts?.delayMs, inv),
      onCrash: (reason) => {
        if (this.#isolate === iso) this.#restart(reason);
      },
    }, this.#forceWasm);
    return iso;
  }

  async #call(op: "publish" | "emit", subject: string, data: Uint8Array, delayMs?: number, inv?: Invocation): Promise<void> {
    // Outputs carry the trace on: a new span in the handler's trace.
    if (this.#shadow) {
      // Captured, never stored (checked as the host would, so a bad subject fails here too).
      if (op === "publish" && !isPublishSubject(subject)) throw new TypeError(`ctx.publish: invalid subject ${JSON.stringify(subject)} (dot-separated tokens, no wildcards)`);
      if (inv) this.#shadow.output(inv.seq, op, subject, data);
      return;
    }
    if (inv && inv.attempt === 1) this.tap?.output(inv.seq, op, subject, data);
    const parent = parseTraceparent(inv?.traceparent, inv?.tracestate);
    const span = parent ? childSpan(parent) : undefined;
    if (op === "emit") return await this.#emit(subject, data, delayMs, span);
    if (!isPublishSubject(subject)) {
      throw new TypeError(`ctx.publish: invalid subject ${JSON.stringify(subject)} (dot-separated tokens, no wildcards)`);
    }
    const h = span ? natsHeaders() : undefined;
    if (h && span) {
      h.set(TRACEPARENT_HEADER, formatTraceparent(span));
      if (span.tracestate) h.set(TRACESTATE_HEADER, span.tracestate);
    }
    await this.#broker.js.publish(outboxSubject(subject), data, h ? { headers: h } : undefined);
  }

  /** The handler's span for message `m`: a child of the span ingest stored with it (or a new trace). */
  #span(m: JsMsg): { traceparent: string; tracestate?: string } {
    const t = childSpan(parseTraceparent(m.headers?.get(TRACEPARENT_HEADER), m.headers?.get(TRACESTATE_HEADER)));
    return { traceparent: formatTraceparent(t), ...(t.tracestate ? { tracestate: t.tracestate } : {}) };
  }

  #restart(reason: string): void {
    if (this.#stopping) return;
    const now = Date.now();
    this.#counts.crashes++;
    this.#metrics?.restart(this.built.name);
    this.#crashTimes = [...this.#crashTimes.filter((t) => now - t < _CRASH_WINDOW_MS), now];
    const n = this.#crashTimes.length;
    this.#status = n >= 3 ? "crashing" : "restarting";
    this.#lastError = `isolate ${reason === "timeout" ? "restarted after a timeout" : `crashed: ${reason}`}`;
    this.#up = new Promise<void>((r) => (this.#markUp = r));
    const delay = Math.min(30_000, 100 * 2 ** (n - 1));
    this.#log.warn(`${this.#lastError}; restarting in ${delay} ms`);
    setTimeout(() => {
      if (this.#stopping) return;
      const iso = this.#makeIsolate();
      this.#isolate = iso;
      iso.start().then(
        () => {
          if (this.#stopping) return;
          this.#status = "running";
          this.#markUp();
        },
        (e: Error) => {
          this.#lastError = e.message;
          this.#restart(e.message);
        },
      );
    }, delay);
  }

  /** The fields of a log line about message `m` (JSON logs). */
  #fields(m: JsMsg, attempt: number, seconds?: number): LogFields {
    return {
      topic: topicOf(m.subject), seq: m.seq, attempt, msgId: m.headers?.get("Nats-Msg-Id") || undefined,
      durationMs: seconds === undefined ? undefined : Math.round(seconds * 1e6) / 1e3,
      traceId: traceIdOf(m.headers?.get(TRACEPARENT_HEADER)),
    };
  }

  #ackWaitMs(): number {
    return this.definition.timeoutMs + 5_000;
  }

  async #ensureConsumer(durable: string, subjects: string[]): Promise<Consumer> {
    const info = this.definition;
    const jsm = this.#broker.jsm;
    const cfg = {
      durable_name: durable,
      description: `outpost handler ${this.built.name}${this.#shadow ? " (shadow)" : ""}`,
      ack_policy: AckPolicy.Explicit,
      // A shadow sees the readings from the moment it starts, not the backlog.
      deliver_policy: this.#shadow ? DeliverPolicy.New : DeliverPolicy.All,
      // ack_wait covers one invocation plus the time to record its outcome; messages held while
      // the isolate restarts or a slot frees are kept with `working()`. After a crash of the
      // host, this is how long its unfinished messages wait before they are delivered again.
      ack_wait: nanos(this.#ackWaitMs()),
      max_deliver: -1,
      max_ack_pending: Math.max(1_000, info.concurrency * (info.batch?.size ?? 1) * 4),
      ...(subjects.length === 1 ? { filter_subject: subjects[0]! } : { filter_subjects: subjects }),
    };
    let existing;
    try {
      existing = await jsm.consumers.info(STREAMS.ingest, durable);
    } catch (e) {
      if (!(e instanceof JetStreamApiError)) throw e;
    }
    if (!existing) {
      await jsm.consumers.add(STREAMS.ingest, cfg);
    } else {
      const { durable_name: _d, deliver_policy: _p, ...update } = cfg;
      try {
        await jsm.consumers.update(STREAMS.ingest, durable, update);
      } catch (e) {
        // Older servers cannot change a consumer's filter in place.
        this.#log.warn(`recreating consumer ${durable}: ${(e as Error).message}`);
        await jsm.consumers.delete(STREAMS.ingest, durable);
        await jsm.consumers.add(STREAMS.ingest, cfg);
      }
    }
    return await this.#broker.js.consumers.get(STREAMS.ingest, durable);
  }

  async #handle(m: JsMsg): Promise<void> {
    this.#inFlight++;
    const attempt = m.info.deliveryCount;
    // A canary takes the readings whose point falls below its share, on every delivery.
    const c = this.#canary && canaryPoint(m.headers?.get("Nats-Msg-Id") || String(m.seq)) < this.#canary.share ? this.#canary : undefined;
    if (c) c.inFlight++;
    try {
      // While the isolate restarts, hold the message (a restart is not an attempt of its own).
      if (!c && this.#status !== "running") await this.#whileDown(m);
      const iso = c ? c.iso : this.#isolate;
      if (!iso || (!c && this.#status !== "running")) {
        m.nak(); // stopping while the isolate was down: straight back to the stream
        return;
      }
      const info = c ? c.info : this.definition;
      const key = await this.#seen(m);
      if (key === null) return;
      const t0 = performance.now();
      try {
        await iso.invoke({ subject: m.subject, seq: m.seq, attempt, data: m.data, sensor: m.headers?.get(SENSOR_HEADER) || undefined, ...this.#span(m) }, info.timeoutMs);
        const seconds = (performance.now() - t0) / 1000;
        await this.#succeeded(m, key, seconds);
        (c ?? this.#canary)?.hooks.result(c ? "canary" : "active", { ok: true, deadLettered: false, ms: seconds * 1000 });
      } catch (e) {
        const seconds = (performance.now() - t0) / 1000;
        const dead = await this.#failed(m, attempt, e, seconds, c);
        (c ?? this.#canary)?.hooks.result(c ? "canary" : "active", { ok: false, deadLettered: dead, ms: seconds * 1000 });
      }
    } finally {
      if (c) c.inFlight--;
      this.#inFlight--;
      this.#slots?.release(1);
    }
  }

  async #handleBatch(msgs: JsMsg[]): Promise<void> {
    this.#inFlight += msgs.length;
    const info = this.definition;
    try {
      if (this.#status !== "running") await Promise.all(msgs.map((m) => this.#whileDown(m)));
      const iso = this.#isolate;
      if (!iso || this.#status !== "running") {
        for (const m of msgs) m.nak();
        return;
      }
      const keys = await Promise.all(msgs.map((m) => this.#seen(m)));
      const todo = msgs.map((m, i) => ({ m, key: keys[i] })).filter((x) => x.key !== null);
      if (!todo.length) return;
      const items = todo.map(({ m }) => ({ subject: m.subject, seq: m.seq, attempt: m.info.deliveryCount, data: m.data, sensor: m.headers?.get(SENSOR_HEADER) || undefined, ...this.#span(m) }));
      let failures;
      try {
        if (!iso.invokeBatch) throw new HandlerError({ name: "PermanentError", message: "Batches are not available in this isolation tier" }, true);
        failures = await iso.invokeBatch(items, info.timeoutMs);
      } catch (e) {
        // The batch as a whole failed: each reading counts an attempt of its own.
        await Promise.all(todo.map(({ m }) => this.#failed(m, m.info.deliveryCount, e)));
        return;
      }
      const failed = new Map(failures.map((f) => [f.index, f]));
      await Promise.all(todo.map(({ m, key }, i) => {
        const f = failed.get(i);
        return f ? this.#failed(m, m.info.deliveryCount, new HandlerError(f.error, f.permanent)) : this.#succeeded(m, key);
      }));
    } finally {
      this.#inFlight -= msgs.length;
      this.#slots?.release(msgs.length);
    }
  }

  /**
   * With `dedupe`: claim the reading's key for this message, or return null when a copy was
   * handled before (then it is acked here and skipped) or is being handled now (by another slot or
   * host: it comes back in a second). Without: undefined.
   */
  async #seen(m: JsMsg): Promise<string | null | undefined> {
    const d = this.definition.dedupe;
    if (!d || !this.#dedupe) return undefined;
    let key: string | undefined;
    let state: "mine" | "done" | "busy";
    try {
      key = dedupeKey(decodeCbor(m.data), d.fields);
      // Scoped by the authenticated sensor: one sensor's readings cannot pre-claim another's keys.
      const sensor = m.headers?.get(SENSOR_HEADER);
      if (key !== undefined && sensor) key = `${sensor}\u0000${key}`;
      if (key === undefined) return undefined;
      state = await this.#dedupe.claim(key, String(m.seq));
    } catch (e) {
      this.#log.warn(`dedupe check of message ${m.seq} failed (${(e as Error).message}); handling it`);
      return key;
    }
    if (state === "mine") {
      this.#claims.set(m.seq, key);
      return key;
    }
    if (state === "busy") {
      m.nak(1_000);
      this.#log.debug(`message ${m.seq} waits: a copy with its dedupe key is being handled`);
      return null;
    }
    m.ack();
    this.#counts.deduped++;
    this.#metrics?.outcome(this.built.name, "deduped", undefined, this.#fields(m, m.info.deliveryCount));
    this.#log.debug(`message ${m.seq} skipped: its dedupe key was handled before`);
    return null;
  }

  async #succeeded(m: JsMsg, key: string | undefined | null, seconds?: number): Promise<void> {
    if (m.info.deliveryCount === 1) (this.#shadow ?? this.tap)?.done(m.seq, { ok: true, ms: (seconds ?? 0) * 1000 });
    if (this.#shadow) {
      m.ack();
      this.#counts.acked++;
      return;
    }
    if (key) {
      this.#claims.delete(m.seq);
      // Marked done before acking: a crash in between redelivers a reading that is then skipped.
      await this.#dedupe!.done(key, String(m.seq)).catch((e: Error) => this.#log.warn(`cannot remember dedupe key of ${m.seq}: ${e.message}`));
    }
    if (this.#faults.ackDelayMs) await _sleep(this.#faults.ackDelayMs);
    m.ack();
    this.#counts.acked++;
    const fields = this.#fields(m, m.info.deliveryCount, seconds);
    this.#metrics?.outcome(this.built.name, "acked", seconds, fields);
    this.#log.debug(`message ${m.seq} acked`, fields);
    this.#lastAckAt = Date.now();
    this.#firstAckAt ??= this.#lastAckAt;
    this.#firstErrors.delete(m.seq);
  }

  async #whileDown(m: JsMsg): Promise<void> {
    const down = () => this.#status !== "running";
    while (down() && !this.#stopping) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.#up, new Promise<void>((r) => (timer = setTimeout(r, this.#ackWaitMs() / 3)))]);
      clearTimeout(timer);
      if (down()) m.working(); // keep the server from redelivering it meanwhile
    }
  }

  /** @returns whether the message went to DLQ */
  async #failed(m: JsMsg, attempt: number, e: unknown, seconds?: number, canary?: _Canary): Promise<boolean> {
    const info = canary?.info ?? this.definition;
    const built = canary?.built ?? this.built;
    // What the handler threw: its frames pointed back at the author's file and line (the bundle's
    // source map). A timeout or a crash is the host's own error, with the host's frames.
    const error = e instanceof HandlerError ? await mapErrorData(e.data, built.bundleFiles ?? []) : toErrorData(e);
    if (attempt === 1) (this.#shadow ?? this.tap)?.done(m.seq, { ok: false, error: `${error.name}: ${error.message}`, ms: (seconds ?? 0) * 1000 });
    if (this.#shadow) {
      // A shadow's failure is counted, never retried, never dead-lettered.
      this.#counts.failed++;
      m.ack();
      return false;
    }
    this.#counts.failed++;
    // One set of fields for every line and event about this failure.
    const fields = this.#fields(m, attempt, seconds);
    const detail = { ...fields, error: `${error.name}: ${error.message}` };
    this.#metrics?.outcome(this.built.name, "failed", seconds, detail);
    // A crash keeps the restart's own lastError ("isolate crashed: …").
    if (!(e instanceof IsolateCrashedError)) this.#lastError = `${error.name}: ${error.message}${error.at ? ` (at ${error.at})` : ""}`;
    if ((this.#stopping || canary) && e instanceof IsolateCrashedError) {
      // Stopping, or the canary died (it is rolled back): the reading goes back whole.
      m.nak();
      return false;
    }
    if (!this.#firstErrors.has(m.seq)) this.#firstErrors.set(m.seq, error);
    const permanent = e instanceof HandlerError && e.permanent;
    const kind = e instanceof HandlerTimeoutError ? "timed out" : e instanceof IsolateCrashedError ? "crashed" : "failed";
    if ((permanent || attempt >= info.maxAttempts) && !this.#holdDeadLetters) {
      try {
        await deadLetter(this.#broker.js, m, {
          handler: this.built.name,
          version: built.hash,
          subject: m.subject,
          seq: m.seq,
          attempts: attempt,
          error,
          firstError: this.#firstErrors.get(m.seq),
          storedAt: m.time,
          failedAt: new Date(),
          payload: m.data,
          sensor: m.headers?.get(SENSOR_HEADER) || undefined,
          traceparent: m.headers?.get(TRACEPARENT_HEADER) || undefined,
        });
        m.ack();
        const claimed = this.#claims.get(m.seq);
        if (claimed !== undefined) {
          this.#claims.delete(m.seq);
          await this.#dedupe?.release(claimed, String(m.seq)).catch(() => {});
        }
        this.#counts.deadLettered++;
        this.#metrics?.outcome(this.built.name, "dead_lettered", undefined, detail);
        this.#firstErrors.delete(m.seq);
        this.#log.warn(`message ${m.seq} ${kind} on attempt ${attempt}${permanent ? " (permanent)" : ""}${canary ? " (canary)" : ""}: ${error.message}${error.at ? ` (at ${error.at})` : ""}; moved to DLQ`, fields);
        return true;
      } catch (dlqErr) {
        this.#log.error(`cannot write message ${m.seq} to DLQ (${(dlqErr as Error).message}); it stays in INGEST`);
        m.nak(backoffDelay(info.backoff, attempt, info.jitter));
      }
      return false;
    }
    const delay = backoffDelay(info.backoff, attempt, info.jitter);
    this.#counts.retried++;
    this.#metrics?.outcome(this.built.name, "retried", undefined, detail);
    this.#log.warn(`message ${m.seq} ${kind} on attempt ${attempt}/${info.maxAttempts}${canary ? " (canary)" : ""}: ${error.message}${error.at ? ` (at ${error.at})` : ""}; retrying in ${delay} ms`, fields);
    m.nak(delay);
    return false;
  }
}

function _sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
