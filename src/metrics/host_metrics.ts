/**
 * The host's metrics (`GET /metrics`): what is counted as it happens (ingest requests, readings
 * stored, handler outcomes and durations, restarts) and what is read when scraped (handlers,
 * broker, store, auth, releases), plus JetStream's own view of streams and consumers, read in the
 * background every few seconds so a scrape never costs a request per consumer.
 * Labels stay few: topic (only topics some handler consumes), handler, status, outcome, stream,
 * consumer; never a sensor id or a sequence.
 * @module
 */
import type { HubLinkView } from "../hub/link.ts";
import type { UplinkView } from "../hub/uplink.ts";
import type { JetStreamManager } from "@nats-io/jetstream";
import { STREAMS } from "../broker/streams.ts";
import type { HandlerMetrics, HandlerRunner } from "../dispatch/runner.ts";
import type { LogFields, Logger } from "../util/log.ts";
import type { EventBus } from "./events.ts";
import { VERSION } from "../version.ts";
import { MetricsRegistry } from "./registry.ts";

/** What the scrape-time gauges read from the host. */
export interface HostMetricsSources {
  runtime: string;
  runners: () => HandlerRunner[];
  brokerUp: () => boolean;
  ingestAuthRequired: () => boolean;
  store: () => { lost: Record<string, number>; readErrors: number };
  bundles: () => { release: number; probation: boolean } | undefined;
  jsm: () => JetStreamManager | undefined;
  log: Logger;
  /** The live tail, told every outcome while someone listens. */
  events?: EventBus | undefined;
}

type _Stream = { name: string; messages: number; bytes: number; maxBytes: number };
type _Consumer = { name: string; pending: number; ackPending: number; redelivered: number };

const _STATUSES = ["loading", "running", "restarting", "crashing", "failed", "stopped"] as const;

/** The metrics of one host. */
export class HostMetrics implements HandlerMetrics {
  readonly registry = new MetricsRegistry();
  #requests;
  #requestSeconds;
  #stored;
  #outcomes;
  #handleSeconds;
  #restarts;
  #mqtt;
  #shadow;
  /** Set by the host when it reports to a hub. */
  hubLink: (() => HubLinkView) | undefined;
  /** Set by the host when it forwards OUTBOX under --uplink-rate. */
  uplink: (() => UplinkView) | undefined;
  #canary;
  #streams: _Stream[] = [];
  #consumers: _Consumer[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #src: HostMetricsSources;

  constructor(src: HostMetricsSources) {
    this.#src = src;
    const r = this.registry;
    r.gauge("outpost_build_info", "Version and runtime of this host (always 1).", () => [[{ version: VERSION, runtime: src.runtime }, 1]]);
    this.#requests = r.counter("outpost_ingest_requests_total", "Ingest requests by topic and HTTP status.");
    this.#requestSeconds = r.histogram("outpost_ingest_request_duration_seconds", "Time from an ingest request to its answer, by topic.");
    this.#stored = r.counter("outpost_readings_stored_total", "Readings stored in INGEST by ingest, by topic.");
    this.#outcomes = r.counter("outpost_handler_messages_total", "Messages a handler finished, by outcome: acked, failed (an attempt failed), retried, dead_lettered, deduped.");
    this.#handleSeconds = r.histogram("outpost_handler_duration_seconds", "Time a handler took for one message, by handler.");
    this.#restarts = r.counter("outpost_handler_restarts_total", "Isolate restarts (crash or timeout), by handler.");
    this.#shadow = r.counter("outpost_shadow_readings_total", "Readings a shadow run compared with the active version, by handler and verdict: agreed, different output, new failure, fixed failure, both failed.");
    this.#canary = r.counter("outpost_canary_decisions_total", "Canary releases decided, by handler and outcome: promoted, rolled_back.");
    r.gauge("outpost_hub_unreached_seconds", "Seconds since the hub was last reached (--hub or --fleet; absent without one).", () => {
      const h = this.hubLink?.();
      return h ? [[{ hub: h.domain }, h.unreachedSeconds]] : [];
    });
    r.gauge("outpost_outbox_uncopied_results", "Results stored in OUTBOX since the hub was last reached.", () => {
      const h = this.hubLink?.();
      return h?.outbox ? [[{ hub: h.domain }, h.outbox.uncopied]] : [];
    });
    r.gauge("outpost_outbox_at_risk_ratio", "How close OUTBOX is to dropping results the hub has not copied (1: they are being dropped).", () => {
      const h = this.hubLink?.();
      return h?.outbox ? [[{ hub: h.domain }, h.outbox.atRisk]] : [];
    });
    r.gauge("outpost_uplink_pending_results", "Results not yet forwarded to the hub under --uplink-rate, by lane (urgent, bulk).", () => {
      const u = this.uplink?.();
      return u ? [[{ lane: "urgent" }, u.pending.urgent], [{ lane: "bulk" }, u.pending.bulk]] : [];
    });
    r.gauge("outpost_uplink_sent_bytes", "Bytes (subject and payload) forwarded to the hub under --uplink-rate since start.", () => {
      const u = this.uplink?.();
      return u ? [[{}, u.sent.bytes]] : [];
    });
    r.gauge("outpost_canary_share", "The share of a handler's readings a running canary takes (0 when none runs).", () =>
      src.runners().map((x) => [{ handler: x.built.name }, x.canaryShare]));
    this.#mqtt = r.counter("outpost_mqtt_messages_total", "MQTT messages the bridge took from MQTT_IN, by topic and outcome: stored (in INGEST), dead_lettered (could not be stored as sent), retried (broker busy or full).");
    r.gauge("outpost_handler_in_flight", "Messages a handler is handling now.", () => src.runners().map((x) => [{ handler: x.built.name }, x.stats().inFlight]));
    r.gauge("outpost_handler_status", "1 for each handler's current status (loading, running, restarting, crashing, failed, stopped).", function* () {
      for (const x of src.runners()) {
        const s = x.stats().status;
        for (const st of _STATUSES) yield [{ handler: x.built.name, status: st }, s === st ? 1 : 0];
      }
    });
    r.gauge("outpost_handler_memory_bytes", "Memory of a handler's isolate where the runtime can tell (the wasm tier's linear memory).", function* () {
      for (const x of src.runners()) {
        const m = x.stats().memoryBytes;
        if (m !== undefined) yield [{ handler: x.built.name }, m];
      }
    });
    r.gauge("outpost_consumer_num_pending", "Messages of a handler's durable consumer not yet delivered (JetStream, read every 5 s).", () => this.#consumers.map((c) => [{ consumer: c.name }, c.pending]));
    r.gauge("outpost_consumer_num_ack_pending", "Messages delivered to a handler's consumer and not yet acknowledged.", () => this.#consumers.map((c) => [{ consumer: c.name }, c.ackPending]));
    r.gauge("outpost_consumer_num_redelivered", "Messages of a handler's consumer delivered more than once.", () => this.#consumers.map((c) => [{ consumer: c.name }, c.redelivered]));
    r.gauge("outpost_stream_messages", "Messages in a stream (INGEST, OUTBOX, DLQ).", () => this.#streams.map((s) => [{ stream: s.name }, s.messages]));
    r.gauge("outpost_stream_bytes", "Bytes a stream holds.", () => this.#streams.map((s) => [{ stream: s.name }, s.bytes]));
    r.gauge("outpost_stream_max_bytes", "The stream's byte limit (-1: none); headroom is 1 - bytes / max_bytes.", () => this.#streams.map((s) => [{ stream: s.name }, s.maxBytes]));
    r.gauge("outpost_broker_up", "Whether JetStream answered the last probe (1) or not (0).", () => [[{}, src.brokerUp() ? 1 : 0]]);
    r.gauge("outpost_store_lost_messages", "Messages found missing from a stream at start, not yet acknowledged by an operator.", () => Object.values(STREAMS).map((n) => [{ stream: n }, src.store().lost[n] ?? 0]));
    r.readCounter("outpost_store_read_errors_total", "Stored messages nats-server reported it could not read (damaged blocks).", () => [[{}, src.store().readErrors]]);
    r.gauge("outpost_ingest_auth_required", "Whether ingest needs a sensor credential (1) or is open to anyone who reaches the port (0).", () => [[{}, src.ingestAuthRequired() ? 1 : 0]]);
    r.gauge("outpost_bundle_active_release", "The active OTA release (0: the --workers directory).", () => {
      const b = src.bundles();
      return b ? [[{}, b.release]] : [];
    });
    r.gauge("outpost_bundle_probation", "Whether the active release is on probation (1) or committed (0).", () => {
      const b = src.bundles();
      return b ? [[{}, b.probation ? 1 : 0]] : [];
    });
  }

  /** The text of `GET /metrics`. */
  text(): string {
    return this.registry.text();
  }

  /** One ingest request answered. `topic` is a known topic or `(unknown)`. */
  ingest(topic: string, status: number, seconds: number): void {
    this.#requests.inc({ topic, status: String(status) });
    this.#requestSeconds.observe({ topic }, seconds);
  }

  canary(handler: string, promoted: boolean): void {
    this.#canary.inc({ handler, outcome: promoted ? "promoted" : "rolled_back" });
  }

  shadow(handler: string, verdict: string): void {
    this.#shadow.inc({ handler, verdict });
  }

  mqtt(topic: string, outcome: "stored" | "dead_lettered" | "retried"): void {
    this.#mqtt.inc({ topic: topic || "(none)", outcome });
  }

  stored(topic: string, n: number): void {
    this.#stored.inc({ topic }, n);
  }

  outcome(handler: string, outcome: "acked" | "retried" | "dead_lettered" | "deduped" | "failed", seconds?: number, detail?: LogFields): void {
    this.#outcomes.inc({ handler, outcome });
    if (seconds !== undefined) this.#handleSeconds.observe({ handler }, seconds);
    const bus = this.#src.events;
    if (bus?.active) {
      bus.publish({
        type: "outcome", ts: new Date().toISOString(), handler, outcome, topic: detail?.topic, seq: detail?.seq, attempt: detail?.attempt,
        durationMs: detail?.durationMs, error: detail?.error as string | undefined, traceId: detail?.traceId,
      });
    }
  }

  restart(handler: string): void {
    this.#restarts.inc({ handler });
  }

  /** Each consumer's backlog (num_pending), as JetStream said at the last background read. */
  consumers(): { name: string; pending: number }[] {
    return this.#consumers.map((c) => ({ name: c.name, pending: c.pending }));
  }

  /** Each stream's bytes and byte limit, as JetStream said at the last background read. */
  storage(): { stream: string; bytes: number; maxBytes: number }[] {
    return this.#streams.map((s) => ({ stream: s.name, bytes: s.bytes, maxBytes: s.maxBytes }));
  }

  /** p50 and p99 of a handler's handle time in seconds (from the histogram), for views. */
  handleQuantiles(handler: string): { p50: number | undefined; p99: number | undefined } {
    return { p50: this.#handleSeconds.quantile({ handler }, 0.5), p99: this.#handleSeconds.quantile({ handler }, 0.99) };
  }

  /** Read streams and consumers from JetStream now and then every `everyMs`. */
  start(everyMs = 5_000): void {
    const read = async () => {
      const jsm = this.#src.jsm();
      if (!jsm) return;
      try {
        const streams: _Stream[] = [];
        for (const name of Object.values(STREAMS)) {
          const i = await jsm.streams.info(name);
          streams.push({ name, messages: i.state.messages, bytes: i.state.bytes, maxBytes: i.config.max_bytes });
        }
        const consumers: _Consumer[] = [];
        for await (const c of jsm.consumers.list(STREAMS.ingest)) {
          consumers.push({ name: c.name, pending: c.num_pending, ackPending: c.num_ack_pending, redelivered: c.num_redelivered });
        }
        this.#streams = streams;
        this.#consumers = consumers;
      } catch (e) {
        this.#src.log.debug(`metrics: cannot read JetStream (${(e as Error).message}); the last values stay`);
      }
    };
    void read();
    this.#timer = setInterval(() => void read(), everyMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
