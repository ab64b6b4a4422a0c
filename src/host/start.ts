import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Hono } from "hono";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectBroker, type Broker } from "../broker/connect.ts";
import { startNatsServer, type EmbeddedServer } from "../broker/nats_server.ts";
import { ensureStreams, STREAMS } from "../broker/streams.ts";
import { BrokerHealth } from "../broker/health.ts";
import { StoreIntegrity } from "../broker/integrity.ts";
import { DEFAULT_CBOR_LIMITS } from "../codec/cbor.ts";
import { buildHandlerProcess, buildValidator } from "../bundler/bundle.ts";
import { useHandlerProcess } from "../runtime/worker.ts";
import { HostMetrics } from "../metrics/host_metrics.ts";
import { EventBus, tapLogger } from "../metrics/events.ts";
import { eventRoutes } from "../metrics/event_routes.ts";
import { uiRoutes } from "../ui/routes.ts";
import { UiSessions } from "../ui/sessions.ts";
import { VERSION } from "../version.ts";
import { runtime } from "../runtime/detect.ts";
import { HandlerRegistry } from "./registry.ts";
import { ingestRoutes } from "../ingest/routes.ts";
import { storeReadings, type StoreDeps } from "../ingest/store.ts";
import { problemHandler } from "../http/problem.ts";
import { reply } from "../http/reply.ts";
import { loadTls, watchTls, type TlsPaths } from "../http/tls.ts";
import { adminAuth, auditLog, hostCheck, resolveAdminToken, type AdminTokens } from "../http/admin_auth.ts";
import { hostname, networkInterfaces } from "node:os";
import { IngestGuard, type IngestAuthMode } from "../sensors/ingest_auth.ts";
import { registryFile, SensorRegistry } from "../sensors/registry.ts";
import { FleetWatcher } from "../ota/fleet.ts";
import { HubLink } from "../hub/link.ts";
import { Uplink } from "../hub/uplink.ts";
import { BundleManager } from "../ota/manager.ts";
import { bundleRoutes } from "../ota/routes.ts";
import { loadTrustStore } from "../ota/trust.ts";
import { DlqStore } from "../dlq/store.ts";
import { recordRoutes } from "../record/routes.ts";
import { shadowRoutes } from "../release/routes.ts";
import { ensureRecordStream, RECORD_DEFAULTS, RECORD_SHARE } from "../record/streams.ts";
import { Scheduler } from "../dispatch/scheduler.ts";
import { ensureMqttStream, MqttBridge } from "../mqtt/bridge.ts";
import { MQTT_STREAM_SHARE, mqttServerConfig, prefixSubject, prepareMqttStore } from "../mqtt/host.ts";
import { Backpressure } from "../dispatch/backpressure.ts";
import { dlqRoutes } from "../dlq/routes.ts";
import { ConfigError } from "../errors.ts";
import { lockDataDir } from "./lock.ts";
import type { Logger } from "../util/log.ts";
import { runtimeVersion } from "../runtime/detect.ts";
import { serve, type Server } from "../runtime/serve.ts";
import { Validator } from "../schemas/validator.ts";
import { DEFAULT_OUTPUT_LIMITS, type OutputLimits } from "../sandbox/budget.ts";

/** Everything `outpost run` can be told. */
export interface OutpostOptions {
  workersDir: string;
  /** Reload handlers when their files change (default true). */
  watch?: boolean;
  /** Quiet time before a changed file is loaded (default 50 ms). */
  watchDebounceMs?: number;
  port: number;
  host: string;
  dataDir: string;
  /** External server URL(s); embedded nats-server when absent. */
  nats?: string | undefined;
  natsUser?: string | undefined;
  natsPass?: string | undefined;
  natsToken?: string | undefined;
  natsCreds?: string | undefined;
  natsServer?: string | undefined;
  /** JetStream domain of the embedded nats-server (unique per device). */
  natsDomain?: string | undefined;
  /** Topics to record whatever their handlers' definitions say (`--record`). */
  record?: string[] | undefined;
  /** MQTT ingest through the embedded nats-server's MQTT listener: port, and topic prefix (`ingest`). */
  mqtt?: { port: number; prefix: string } | undefined;
  /** Make the embedded nats-server a leafnode of this hub URL (`nats-leaf://…`). */
  natsLeafnode?: string | undefined;
  natsLeafnodeCreds?: string | undefined;
  /** Watch the hub's desired release (KV bucket and key in JetStream domain `domain`) and install it. */
  fleet?: { domain: string; kv: string; key: string } | undefined;
  /** Report to the hub in this JetStream domain (`--hub`; default the `--fleet` domain) and keep the gap alarm. */
  hub?: { domain: string; everyMs?: number; alarmAfterMs?: number; uplink?: { rate: number; urgent?: string | undefined } } | undefined;
  /** What OUTBOX keeps for a hub (`--outbox-max-age`, `--outbox-max-bytes`, `--outbox-max-msgs`). */
  outbox?: { maxAgeMs?: number | undefined; maxBytes?: number | undefined; maxMsgs?: number | undefined } | undefined;
  /** Copies of every stream on a clustered JetStream (`--replicas`; default 1). */
  replicas?: number | undefined;
  maxFileStore: number;
  fsync: string;
  bodyLimit: number;
  maxReadings: number;
  /** `"wasm"` runs every handler in the wasm tier, for code the operator does not trust (default "auto"). */
  isolation?: "auto" | "wasm";
  /** Fault injection for crash tests (from OUTPOST_FAULT_ACK_DELAY_MS): delay between success and ack. */
  faults?: { ackDelayMs?: number };
  /** Ingest answers 429 once a consuming handler has this many readings waiting (default 100 000). */
  maxBacklog?: number;
  /** Ingest answers 429 once this many delayed readings wait (default 10 000). */
  maxDelayed?: number;
  /** Open HTTP connections at once; past it new ones are answered 503 and closed (default 1024). */
  maxConnections?: number;
  /** How often the store marks are written and orphaned messages looked for (default 10 s). */
  storeCheckMs?: number;
  /** How long to wait for an external server (`--nats`) at start (default 10 s). */
  natsTimeoutMs?: number;
  /** Ceiling on a definition's `memoryMb` (default 512). */
  maxHandlerMemoryMb?: number;
  /** Caps on what one message may make a handler send out. */
  outputLimits?: OutputLimits;
  /** Bearer token of the admin surface; without one, the host makes one in `<data-dir>/admin.token`. */
  adminToken?: string | undefined;
  /** A read-only token: `/v1/handlers` and `/metrics`. */
  readToken?: string | undefined;
  /** `/metrics` without a token (a scraper on a trusted network). */
  metricsOpen?: boolean | undefined;
  /** Host names and addresses requests may name in `Host` beyond the host's own (`*`: any). */
  allowedHosts?: string[] | undefined;
  /**
   * Node: run worker-tier handlers and the schema isolate in a child process behind Node's
   * permission model (default true); false keeps them in the host's process.
   */
  handlerProcess?: boolean | undefined;
  /** Prometheus metrics (`GET /metrics`; default true). */
  metrics?: boolean | undefined;
  /** HTTPS: certificate and key files (re-read when they change), optionally a client CA. */
  tls?: TlsPaths | undefined;
  /** Sensor authentication at ingest: auto (required once the registry exists), required, off. */
  ingestAuth?: IngestAuthMode | undefined;
  /** The sensor registry file (default `<data-dir>/sensors.json`). */
  sensorsFile?: string | undefined;
  /** OTA bundles: trusted keys (files or `ed25519:` texts), k of n, size limit, probation policy. */
  bundles?: {
    trust: string[];
    trustThreshold: number;
    maxBundleSize: number;
    probationMs: number;
    probationMessages: number;
    probationFailurePct: number;
    /** Pause after each installation step (for crash tests). */
    stepDelayMs?: number;
  };
  log: Logger;
}

/** A running Outpost host. */
export interface Outpost {
  /** Base URL of the HTTP server. */
  url: string;
  port: number;
  registry: HandlerRegistry;
  broker: Broker;
  /** Stop HTTP, drain handlers, close the broker connection, stop the embedded server. */
  stop(): Promise<void>;
}

/**
 * Start Outpost: broker (embedded or external), streams, the schema isolate, every handler in
 * the directory, then HTTP.
 * @param o options (see `outpost --help`)
 */
export async function startOutpost(o: OutpostOptions): Promise<Outpost> {
  const log = o.log;
  log.info(`outpost on ${runtimeVersion()}`);
  const dataDir = resolve(o.dataDir);
  _checkFleetOptions(o);
  await mkdir(dataDir, { recursive: true });
  // Before anything is launched: the data directory is ours, and the port is ours.
  const unlock = await lockDataDir(dataDir, log);
  let gate: _Gate;
  try {
    gate = await _bind(o);
  } catch (e) {
    await unlock();
    throw e;
  }
  // A rotated certificate is served without a restart.
  const stopTls = o.tls ? watchTls(o.tls, gate.server, log) : () => {};
  try {
    const host = await _start(o, dataDir, gate);
    return {
      ...host,
      stop: async () => {
        stopTls();
        await host.stop();
        await unlock();
      },
    };
  } catch (e) {
    stopTls();
    await gate.server.close().catch(() => {});
    await unlock();
    throw e;
  }
}

/** The HTTP server, bound first and answering 503 until the host is ready. */
interface _Gate {
  server: Server;
  open(fetch: (req: Request, env?: unknown) => Response | Promise<Response>): void;
}

async function _bind(o: OutpostOptions): Promise<_Gate> {
  let handle: (req: Request, env?: unknown) => Response | Promise<Response> = (req) =>
    reply(req, 503, { error: "starting", message: "The host is still starting" }, { "retry-after": "1" });
  let server: Server;
  const tls = o.tls ? await loadTls(o.tls) : undefined;
  if (tls) o.log.info(`HTTPS with ${tls.subject}, valid to ${tls.validTo}${o.tls?.clientCaFile ? "; client certificates checked against " + o.tls.clientCaFile : ""}`);
  try {
    server = await serve({ fetch: (req, env) => handle(req, env), port: o.port, hostname: o.host, maxConnections: o.maxConnections ?? 1024, tls: tls?.files });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).name;
    if (/EADDRINUSE|AddrInUse/i.test(`${code} ${(e as Error).message}`)) {
      throw new ConfigError(`Port ${o.port} on ${o.host} is in use: stop what listens there, or pass --port`);
    }
    throw e;
  }
  return { server, open: (f) => (handle = f) };
}

async function _start(o: OutpostOptions, dataDir: string, gate: _Gate): Promise<Outpost> {
  // The live tail sees every log line of the host (and its handlers) while someone listens.
  const events = new EventBus();
  const log = tapLogger(o.log, events);
  // Read before anything starts: an invalid registry is a start-up error, never an open ingest.
  const sensors = new SensorRegistry(o.sensorsFile ?? registryFile(dataDir), (msg, level) => log[level](msg));
  await sensors.load();
  const guard = new IngestGuard(sensors, o.ingestAuth ?? "auto", log);
  const adminToken = await resolveAdminToken(o.adminToken, dataDir);
  log.info(`admin token from ${adminToken.from}${o.readToken ? "; a read-only token is set" : ""}`);
  if (!guard.required && !_isLoopback(o.host)) {
    log.warn(`ingest auth is off and the host listens on ${o.host}: anyone who reaches the port can post readings to any topic; ` +
      "add a sensor (outpost sensors add ID --topics T) to require credentials");
  } else if (guard.required) log.info(`ingest needs a sensor credential (${sensors.sensors.length} sensor(s) in ${sensors.file})`);
  let embedded: EmbeddedServer | undefined;
  let stopMqttRefresh = () => {};
  let mqttBridge: MqttBridge | undefined;
  let stopping = false;
  let integrity: StoreIntegrity | undefined;
  let broker: Broker;
  if (o.nats) {
    if (o.mqtt) {
      throw new ConfigError("--mqtt-port turns on the embedded nats-server's MQTT listener; with --nats, enable MQTT on that server " +
        "and route it to the host as docs/mqtt.md shows");
    }
    broker = await connectBroker({ servers: o.nats, user: o.natsUser, pass: o.natsPass, token: o.natsToken, credsFile: o.natsCreds }, log, o.natsTimeoutMs ?? 10_000);
    log.info(`connected to external nats-server ${broker.nc.info?.version ?? "?"} at ${o.nats}`);
  } else {
    const serverOpts: Parameters<typeof startNatsServer>[0] = {
      binary: o.natsServer, dataDir, maxFileStore: o.maxFileStore, fsync: o.fsync, log: log.child("nats"), domain: o.natsDomain,
      leafnode: o.natsLeafnode ? { url: o.natsLeafnode, credsFile: o.natsLeafnodeCreds } : undefined,
      onStoreError: (line) => integrity?.reportReadError(line),
    };
    if (o.mqtt) {
      const m = o.mqtt;
      const anonymousPassword = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(24))));
      const mqttConfig = () => mqttServerConfig({ host: o.host, port: m.port, prefix: m.prefix, sensors, required: guard.required, tls: o.tls, anonymousPassword, log });
      serverOpts.mqtt = mqttConfig();
      await prepareMqttStore(serverOpts, Math.floor(o.maxFileStore * MQTT_STREAM_SHARE), o.bodyLimit, log);
      // The MQTT users follow the registry: a sensor added, rotated or revoked is in force within seconds.
      sensors.onReload = () => {
        serverOpts.mqtt = mqttConfig();
        void embedded?.reconfigure(serverOpts.mqtt).then(
          () => log.info(`MQTT logins follow the sensor registry: ${serverOpts.mqtt!.sensors.length} sensor(s); nats-server reloaded`),
          (e: Error) => log.error(`cannot reload nats-server with the new MQTT logins: ${e.message}`),
        );
      };
      const refresh = setInterval(() => void sensors.refresh(), 2_000);
      (refresh as { unref?: () => void }).unref?.();
      stopMqttRefresh = () => clearInterval(refresh);
    }
    embedded = await startNatsServer(serverOpts);
    try {
      broker = await connectBroker({ servers: embedded.url, nkeySeed: embedded.seed }, log);
    } catch (e) {
      await embedded.stop();
      throw e;
    }
    log.info(`embedded nats-server ${embedded.version} ready at ${embedded.url} (pid ${embedded.pid})` +
      `${o.natsDomain ? `, JetStream domain ${o.natsDomain}` : ""}${o.natsLeafnode ? `, leafnode of ${o.natsLeafnode.replace(/\/\/[^@/]*@/, "//***@")}` : ""}`);
    const supervise = (srv: EmbeddedServer) => void srv.exited.then(async (code) => {
      if (stopping) return;
      log.error(`embedded nats-server exited unexpectedly (code ${code}); restarting it, readings are refused with 503 meanwhile`);
      // Same port and client key: the client reconnects by itself; the store on disk is the same.
      const pinned = { ...serverOpts, pin: { port: Number(new URL(srv.url).port), seed: srv.seed } };
      for (let attempt = 0; !stopping; attempt++) {
        await new Promise((r) => setTimeout(r, Math.min(30_000, 250 * 2 ** attempt)));
        if (stopping) return;
        try {
          embedded = await startNatsServer(pinned);
          log.info(`embedded nats-server restarted (pid ${embedded.pid})`);
          supervise(embedded);
          return;
        } catch (e) {
          log.error(`restarting nats-server failed: ${(e as Error).message}`);
        }
      }
    });
    supervise(embedded);
  }
  const bundleDir = join(dataDir, "build");
  let metrics: HostMetrics | undefined;
  let stopHandlerProcess: (() => Promise<void>) | undefined;
  let validator: Validator | undefined;
  let registry: HandlerRegistry;
  let bundles: BundleManager | undefined;
  let fleet: FleetWatcher | undefined;
  let hub: HubLink | undefined;
  let uplink: Uplink | undefined;
  let scheduler: Scheduler | undefined;
  let server: Server;
  const health = new BrokerHealth(broker, {
    storeDir: embedded ? join(dataDir, "jetstream") : undefined,
    replace: embedded ? () => embedded?.kill() : undefined,
    log: log.child("broker"),
  });
  try {
    broker.replicas = o.replicas ?? 1;
    await ensureStreams(broker.jsm, o.maxFileStore, log, {
      replicas: o.replicas, outboxMaxAgeMs: o.outbox?.maxAgeMs, outboxMaxBytes: o.outbox?.maxBytes, outboxMaxMsgs: o.outbox?.maxMsgs,
    });
    if (o.mqtt) await ensureMqttStream(broker, Math.floor(o.maxFileStore * MQTT_STREAM_SHARE), o.bodyLimit);
    for (const t of o.record ?? []) await ensureRecordStream(broker.jsm, t, RECORD_DEFAULTS, o.maxFileStore * RECORD_SHARE, broker.replicas);
    integrity = new StoreIntegrity({
      jsm: broker.jsm, file: join(dataDir, "store-marks.json"), streams: Object.values(STREAMS),
      // Only on our own server does nothing else consume INGEST while this host is stopped.
      countStreams: embedded ? [STREAMS.ingest] : [], interestStream: STREAMS.ingest, log: log.child("store"),
    });
    await integrity.check();
    integrity.start(o.storeCheckMs ?? 10_000);
    health.start();
    scheduler = new Scheduler(broker, log.child("scheduler"));
    await scheduler.start();
    if ((runtime === "node" || runtime === "bun") && o.handlerProcess !== false) {
      // Handler code (and schemas, which run handler modules) reads only the handler builds.
      stopHandlerProcess = useHandlerProcess({
        entry: await buildHandlerProcess(bundleDir),
        readable: [bundleDir, resolve(o.workersDir), join(dataDir, "bundles", "releases")],
        log: log.child("handlers"),
      });
      log.info(`worker-tier handlers run in a handler process that reads only the handler builds (${runtime === "node" ? "Node permission model" : "Landlock"})`);
    }
    validator = new Validator(await buildValidator(bundleDir), log.child("schemas"));
    await validator.start();
    // An active OTA release takes precedence over --workers (see bundles/manager.ts).
    const b = o.bundles ?? { trust: [], trustThreshold: 1, maxBundleSize: 16 * 1024 * 1024, probationMs: 60_000, probationMessages: 100, probationFailurePct: 10 };
    bundles = await BundleManager.open({
      dataDir, workersDir: o.workersDir, trust: await loadTrustStore(b.trust, b.trustThreshold), maxBytes: b.maxBundleSize,
      probation: { ms: b.probationMs, messages: b.probationMessages, failurePct: b.probationFailurePct, minFailures: 3 },
      watch: o.watch !== false, quietMs: o.watchDebounceMs ?? 50, log: log.child("bundles"), stepDelayMs: b.stepDelayMs ?? 0,
    });
    const pressure = new Backpressure(broker, o.maxBacklog ?? 100_000, o.maxDelayed ?? 10_000);
    const reg = () => registry;
    const storeDeps: StoreDeps = {
      broker: () => broker,
      validator,
      pressure: (t) => pressure.check(reg().consumersOf(t)),
      delayedPressure: (n) => pressure.checkDelayed(n),
      health: () => health.state(),
      log: log.child("ingest"),
    };
    if (o.metrics !== false) {
      metrics = new HostMetrics({
        runtime, runners: () => registry?.runners() ?? [], brokerUp: () => health.state().ok, ingestAuthRequired: () => guard.required,
        store: () => {
          const lost: Record<string, number> = {};
          for (const p of integrity!.problems()) lost[p.stream] = (lost[p.stream] ?? 0) + p.lost;
          return { lost, readErrors: integrity!.readErrors };
        },
        bundles: () => (bundles ? { release: bundles.activeRelease, probation: bundles.view().probation !== null } : undefined),
        jsm: () => broker.jsm,
        log: log.child("metrics"),
        events,
      });
      metrics.start();
    }
    registry = new HandlerRegistry({
      dir: bundles.handlerDir, bundleDir, broker, validator, log, store: (req) => storeReadings(storeDeps, req),
      isolation: o.isolation, faults: o.faults, metrics,
      recording: { topics: o.record ?? [], budget: o.maxFileStore * RECORD_SHARE },
      policy: { limits: o.outputLimits ?? DEFAULT_OUTPUT_LIMITS, maxMemoryMb: o.maxHandlerMemoryMb ?? 512 },
    });
    if (o.watch !== false && !bundles.releaseActive) await registry.watch(o.watchDebounceMs ?? 50);
    await registry.loadAll();
    await bundles.attach(registry);
    if (metrics) {
      const m = metrics;
      bundles.onCanary = (h, promoted) => m.canary(h, promoted);
    }
    if (o.mqtt) {
      const m = metrics;
      mqttBridge = new MqttBridge({
        broker: () => broker, prefix: prefixSubject(o.mqtt.prefix), route: (t) => registry.route(t), store: (req) => storeReadings(storeDeps, req),
        bodyLimit: o.bodyLimit, maxReadings: o.maxReadings, cborLimits: DEFAULT_CBOR_LIMITS, log: log.child("mqtt"),
        onOutcome: m ? (outcome, topic) => m.mqtt(topic, outcome) : undefined,
      });
      await mqttBridge.start();
      log.info(`MQTT ingest on ${o.host}:${o.mqtt.port}: publish to ${o.mqtt.prefix}/<topic>; ${guard.required ? "sensors log in with their id and token" : "open: no credentials needed (ingest auth is off)"}`);
    }
    if (o.fleet) {
      // The hub's KV and object store are reached through its domain; the host's own streams stay
      // on the local JetStream ($JS.API never crosses a leafnode between different domains).
      fleet = new FleetWatcher({
        js: jetstream(broker.nc, { domain: o.fleet.domain, timeout: 10_000 }), domain: o.fleet.domain, kv: o.fleet.kv, key: o.fleet.key,
        maxBytes: b.maxBundleSize, manager: bundles, stateFile: join(dataDir, "bundles", "fleet.json"), log: log.child("bundles"),
      });
      const f = fleet;
      bundles.fleetView = () => f.view();
      await fleet.start();
    }
    const hubDomain = o.hub?.domain ?? o.fleet?.domain;
    if (hubDomain && o.natsDomain) {
      const bm = bundles;
      const hubJsm = () => jetstreamManager(broker.nc, { domain: hubDomain, timeout: 5_000, checkAPI: false });
      if (o.hub?.uplink) {
        uplink = new Uplink({
          device: o.natsDomain, rate: o.hub.uplink.rate, urgent: o.hub.uplink.urgent, jsm: () => broker.jsm, js: () => broker.js,
          hubJs: jetstream(broker.nc, { domain: hubDomain, timeout: 5_000 }), hubJsm, log: log.child("hub"),
        });
        await uplink.start();
      }
      const up = uplink;
      hub = new HubLink({
        uncopied: up ? () => up.view().pending.bulk : undefined,
        device: o.natsDomain, domain: hubDomain, hubJs: jetstream(broker.nc, { domain: hubDomain, timeout: 5_000 }), jsm: () => broker.jsm,
        hubJsm,
        log: log.child("hub"), everyMs: o.hub?.everyMs, alarmAfterMs: o.hub?.alarmAfterMs,
        status: () => {
          const v = bm.view();
          return {
            release: { active: v.active.release, name: v.active.name, version: v.active.version, probation: v.probation !== null },
            canary: v.canary ? { release: v.canary.release, version: v.canary.version, state: v.canary.state, reason: v.canary.reason, share: v.canary.policy.share,
              handlers: v.canary.handlers.map((h) => ({ name: h.name, decided: h.decided, attempts: h.canary?.canary.attempts ?? 0, errorRate: h.canary?.canary.errorRate ?? null })) } : null,
            handlerCanaries: registry.view().filter((h) => h.canary).map((h) => ({ handler: h.name, candidate: h.canary!.candidate, state: h.canary!.state, share: h.canary!.policy.share })),
            fleet: v.fleet ? { state: v.fleet.state, desired: v.fleet.desired?.release ?? null, lastOutcome: v.fleet.lastOutcome } : null,
            uplink: up?.view() ?? null,
          };
        },
      });
      hub.start();
      if (metrics) {
        metrics.hubLink = () => hub!.view();
        metrics.uplink = up ? () => up.view() : undefined;
      }
    }
    const app = new Hono();
    const ready = { streams: true, handlersLoaded: true };
    // Every request must name this host (DNS rebinding reaches nothing); no CORS headers anywhere,
    // so another origin's page cannot read an answer.
    app.use("*", hostCheck(_allowedHosts(o)));
    const tokens: AdminTokens = { admin: adminToken.token, read: o.readToken };
    // The dashboard's session cookie counts as a token on the same routes (changes need its CSRF token).
    const sessions = new UiSessions();
    const readAuth = adminAuth(tokens, "read", sessions);
    app.use("/v1/handlers", readAuth);
    if (!o.metricsOpen) app.use("/metrics", readAuth);
    app.get("/healthz", (c) => reply(c.req.raw, 200, { status: "ok" }));
    // A check per cause: the broker, the streams, the store's integrity, crash-looping handlers, storage headroom.
    const readiness = () => {
      const b = health.state();
      const problems = integrity!.problems();
      const crashing = registry.runners().filter((r) => r.stats().status === "crashing").map((r) => r.built.name);
      const storage = (metrics?.storage() ?? []).map((s) => ({ ...s, use: s.maxBytes > 0 ? s.bytes / s.maxBytes : 0 }));
      const full = storage.filter((s) => s.use > _STORAGE_FLOOR);
      const ok = b.ok && ready.streams && ready.handlersLoaded && !problems.length && !crashing.length && !full.length;
      const reasons = [
        ...(b.message ? [b.message] : []), ...problems.map((p) => p.message),
        ...crashing.map((n) => `handler ${n} is crash-looping (three crashes within a minute)`),
        ...full.map((s) => `stream ${s.stream} is ${Math.round(s.use * 100)} % full (${s.bytes} of ${s.maxBytes} bytes)`),
      ];
      return { b, problems, crashing, storage, ok, reasons };
    };
    app.get("/readyz", (c) => {
      const { b, problems, crashing, storage, ok, reasons } = readiness();
      return reply(c.req.raw, ok ? 200 : 503, {
        ready: ok,
        broker: b.ok,
        streams: ready.streams,
        store: { ok: !problems.length, problems },
        handlers: { running: registry.runners().length, failed: registry.failedCount(), crashing },
        storage: Object.fromEntries(storage.map((s) => [s.stream, Math.round(s.use * 1000) / 1000])),
        ingestAuth: guard.required ? "required" : "off",
        ...(reasons.length ? { reasons } : {}),
        ...(hub ? { hub: { ...hub.view(), uplink: uplink?.view() ?? null } } : {}),
        ...(_warnings(guard, o.host, hub?.view().alarm).length ? { warnings: _warnings(guard, o.host, hub?.view().alarm) } : {}),
      });
    });
    if (metrics) {
      const m = metrics;
      app.get("/metrics", (c) => c.text(m.text(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }));
      // Every ingest request: its topic (one some handler consumes, else "(unknown)"), status, time.
      app.use("/v1/ingest/:topic", async (c, next) => {
        const t0 = performance.now();
        await next();
        const topic = c.req.param("topic");
        m.ingest(topic && registry.route(topic) ? topic : "(unknown)", c.res.status, (performance.now() - t0) / 1000);
      });
    }
    app.get("/v1/handlers", (c) => reply(c.req.raw, 200, { source: bundles!.source, handlers: registry.view() }));
    app.route("/", ingestRoutes({
      ...storeDeps,
      route: (t) => registry.route(t),
      topics: () => registry.topics(),
      bodyLimit: o.bodyLimit,
      maxReadings: o.maxReadings,
      cborLimits: DEFAULT_CBOR_LIMITS,
      guard,
      onStored: metrics ? (topic, n) => metrics!.stored(topic, n) : undefined,
    }));
    // Admin routes (DLQ, OTA bundles, the store) need the admin token; ingest and health never do.
    const admin = adminAuth(tokens, "admin", sessions);
    const audit = auditLog(log.child("audit"));
    for (const path of ["/v1/dlq", "/v1/dlq/*", "/v1/bundles", "/v1/bundles/*", "/v1/store/*"]) app.use(path, admin, audit);
    app.use("/v1/record/*", admin);
    app.route("/", recordRoutes(() => broker));
    // Starting and ending shadow runs change things: admin token (GET /v1/handlers stays readable).
    app.on(["POST", "DELETE"], "/v1/handlers/*", admin, audit);
    app.route("/", shadowRoutes({
      registry: () => registry, dataDir, releaseActive: () => bundles!.releaseActive,
      onVerdict: metrics ? (h, v) => metrics!.shadow(h, v) : undefined,
      onCanary: metrics ? (h, promoted) => metrics!.canary(h, promoted) : undefined,
    }));
    app.use("/v1/events", admin);
    app.route("/", eventRoutes(events));
    app.route("/", uiRoutes({
      tokens, sessions, secure: o.tls !== undefined, log: log.child("ui"),
      state: () => {
        const consumers = new Map((metrics?.consumers() ?? []).map((x) => [x.name, x.pending]));
        const r = readiness();
        return {
          version: VERSION, runtime, ready: r.ok, reasons: r.reasons,
          handlers: registry.view().map((h) => {
            const q = metrics?.handleQuantiles(h.name);
            const ms = (v: number | undefined) => (v === undefined ? null : Math.round(v * 10_000) / 10);
            return { ...h, backlog: h.consumer ? consumers.get(h.consumer) ?? null : null, p50Ms: ms(q?.p50), p99Ms: ms(q?.p99) };
          }),
          storage: metrics?.storage() ?? [],
          releases: bundles?.view() ?? null,
        };
      },
    }));
    app.post("/v1/store/acknowledge", (c) => reply(c.req.raw, 200, { acknowledged: integrity!.acknowledge() }));
    app.route("/", bundleRoutes(() => bundles, b.maxBundleSize, log.child("bundles")));
    const dlq = new DlqStore(broker.jsm, broker.js);
    app.route("/", dlqRoutes(() => dlq));
    app.notFound((c) => reply(c.req.raw, 404, { error: "not_found", message: `No route for ${c.req.method} ${new URL(c.req.url).pathname}` }));
    app.onError(problemHandler(log));
    server = gate.server;
    gate.open(app.fetch);
  } catch (e) {
    stopping = true;
    health.stop();
    await integrity?.stop().catch(() => {});
    await fleet?.stop();
    hub?.stop();
    await uplink?.stop();
    bundles?.stop();
    stopMqttRefresh();
    await mqttBridge?.stop();
    await scheduler?.stop();
    await registry!?.stopAll().catch(() => {});
    await validator?.stop().catch(() => {});
    await stopHandlerProcess?.().catch(() => {});
    await broker.close().catch(() => {});
    await embedded?.stop();
    throw e;
  }
  const shownHost = o.host === "0.0.0.0" || o.host === "::" ? "127.0.0.1" : o.host;
  const url = `${o.tls ? "https" : "http"}://${shownHost.includes(":") ? `[${shownHost}]` : shownHost}:${server.port}`;
  log.info(`listening on ${o.host}:${server.port}; POST readings to ${url}/v1/ingest/<topic>`);
  return {
    url,
    port: server.port,
    registry,
    broker,
    stop: async () => {
      stopping = true;
      await server.close().catch(() => {});
      await fleet?.stop();
      hub?.stop();
      await uplink?.stop();
      bundles?.stop();
      stopMqttRefresh();
      await mqttBridge?.stop();
      await scheduler!.stop();
      await registry.stopAll();
      await validator!.stop();
      await stopHandlerProcess?.();
      metrics?.stop();
      health.stop();
      await integrity!.stop();
      await broker.close();
      await embedded?.stop();
      log.info("stopped");
    },
  };
}

/** The names a request's `Host` may give: this machine's names and addresses, and the operator's. */
function _allowedHosts(o: OutpostOptions): Set<string> {
  const names = new Set(["localhost", "127.0.0.1", "::1"]);
  try {
    const h = hostname().toLowerCase();
    names.add(h);
    names.add(`${h}.local`);
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.add(a.address.toLowerCase().replace(/%.*$/, ""));
  } catch { /* a runtime without them: the operator's list and loopback */ }
  if (o.host !== "0.0.0.0" && o.host !== "::") names.add(o.host.toLowerCase());
  for (const x of o.allowedHosts ?? []) names.add(x.trim().toLowerCase());
  return names;
}

/** Past this share of a stream's byte limit, /readyz says not ready (INGEST would soon refuse readings). */
const _STORAGE_FLOOR = 0.95;

function _isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

/** What an operator should know although the host is ready. */
function _warnings(guard: IngestGuard, host: string, hubAlarm?: string | null): string[] {
  return [
    ...(hubAlarm ? [`hub gap alarm: ${hubAlarm}`] : []),
    ...(guard.required || _isLoopback(host) ? [] : ["ingest auth: off (anyone who reaches the port can post; outpost sensors add closes it)"]),
    ...(guard.registry.error ? [guard.registry.error] : []),
  ];
}


function _checkFleetOptions(o: OutpostOptions): void {
  // A bearer token (RFC 6750 b64token) is what an Authorization header can carry.
  if (o.adminToken !== undefined && !/^[A-Za-z0-9._~+/-]+=*$/.test(o.adminToken)) {
    throw new ConfigError("--admin-token: use letters, digits and . _ ~ + / - (a bearer token), optionally ending in =");
  }
  const name = /^[A-Za-z0-9_-]+$/;
  if (o.natsDomain !== undefined && !name.test(o.natsDomain)) throw new ConfigError(`--nats-domain ${JSON.stringify(o.natsDomain)}: use letters, digits, - and _`);
  if (o.fleet && !name.test(o.fleet.domain)) throw new ConfigError(`--fleet ${JSON.stringify(o.fleet.domain)}: a JetStream domain (letters, digits, - and _)`);
  if (o.natsLeafnode && o.nats) throw new ConfigError("--nats-leafnode configures the embedded nats-server; with --nats, make that server a leafnode instead");
  // Two JetStreams joined by a leafnode must have different domains, or their APIs answer each other.
  if (o.natsLeafnode && !o.natsDomain) throw new ConfigError("--nats-leafnode needs --nats-domain: a JetStream domain unique to this device");
  if (o.hub && !o.natsDomain) throw new ConfigError(`--hub ${o.hub.domain}: the device reports under its own JetStream domain: give it one with --nats-domain`);
  if (o.hub?.uplink && o.hub.uplink.rate < 1024) throw new ConfigError(`--uplink-rate ${o.hub.uplink.rate}: at least 1K (bytes a second)`);
  if (o.hub?.uplink?.urgent !== undefined && !/^out(\.[A-Za-z0-9_*-]+)*(\.>)?$/.test(o.hub.uplink.urgent)) throw new ConfigError(`--uplink-urgent ${JSON.stringify(o.hub.uplink.urgent)}: a subject filter of OUTBOX, such as out.alerts.>`);
  if (o.hub && !name.test(o.hub.domain)) throw new ConfigError(`--hub ${JSON.stringify(o.hub.domain)}: a JetStream domain (letters, digits, - and _)`);
  if (o.fleet && o.natsDomain === o.fleet.domain) throw new ConfigError(`--fleet ${o.fleet.domain} is this device's own domain (--nats-domain); name the hub's domain`);
}
