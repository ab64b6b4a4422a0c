/** Every section of one runtime's run: ceilings, ingest, end to end, isolation, footprint. */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Runtime } from "./args.ts";
import type { TierFigures } from "./wasm_measure.ts";
import { PARK_HANDLER, PARK_SENML_HANDLER, SINK_CONCURRENCY, sinkHandler } from "./handlers.ts";
import { openLoop, openLoopFloor, type LatencyResult } from "./openloop.ts";
import { cborReading, cborSeq, jsonArray, senmlPack } from "./payload.ts";
import { availableParallelism } from "node:os";
import { cpuMs, freePort, memoryOf, pin, Procs, ROOT, rssBytes, runProbe, sleep, startHost, startNats, tsCommand, waitFor } from "./procs.ts";
import { runWrk, type WrkResult } from "./wrk.ts";
import { writeFile } from "node:fs/promises";

/** Durations and sizes of a run. */
export interface Plan {
  seconds: number;
  latencySeconds: number;
  idleSettleMs: number;
  coldRuns: number;
  seqMessages: number;
  parMessages: number;
  connections: number;
  batch: number;
}

/** One ingest measurement. */
export interface IngestResult {
  readingsPerSec: number;
  requestsPerSec: number;
  stored: number;
  ceilingPerSec: number;
  ratio: number;
  /** Ratio to the additive ceiling 1/(1/publish + 1/HTTP), for single readings (each costs one of both). */
  ratioAdditive?: number;
  non2xx: number;
  latencyMs: WrkResult["latencyMs"];
}

/** What one runtime measured. */
export interface RuntimeResult {
  runtime: Runtime;
  ceilings: { publishPerSec: number; httpPerSec: number; pubsubPerSec: number; publishWindow: number; additivePerSec: number };
  /**
   * The minimal relay (POST → js.publish → 202, no validation) and Outpost's single-reading ingest,
   * alternately (A B A B …): readings/s of each pass, and Outpost ÷ relay pair by pair.
   */
  relay: { outpost: number[]; relay: number[]; ratios: number[]; medianRatio: number };
  ingest: { single: IngestResult; cborBatch: IngestResult; jsonBatch: IngestResult; senmlJson: IngestResult; senmlCbor: IngestResult };
  /**
   * MQTT ingest (QoS 1, the mqtt npm client) on a host with an embedded nats-server and
   * `--mqtt-port`, next to single-reading HTTP ingest on that same host.
   */
  mqtt: { storedPerSec: number; pubackPerSec: number; messages: number; window: number; httpSameHostPerSec: number; ratioToHttp: number };
  /** Single-reading ingest on the host with metrics and on one started `--no-metrics`, A B A B: requests/s each, and their ratios pair by pair. */
  metricsCost: { withMetrics: number[]; without: number[]; ratios: number[]; medianRatio: number };
  endToEnd: { sustainedPerSec: number; ingestPerSec: number; ratio: number; backlogAtEnd: number; drainPerSec: number | null; latency: LatencyResult; latencyRuns: number[];
    /** The same open loop against the bare 202 server, same rate and pinning: the run with the median p99, and each run's p99. */
    latencyFloor?: { p50: number; p99: number; runs: number[]; cpu?: LatencyCpu | undefined }; latencyRelay?: { p50: number; p99: number; runs: number[]; cpu?: LatencyCpu | undefined }; latencyCpu?: LatencyCpu | undefined; latencyHalfCpu?: LatencyResult & { runs: number[]; cpu?: LatencyCpu | undefined }; latencyPinning?: string; sustainedPinnedPerSec?: number | null; additivePerSec?: number; ratioAdditive?: number; ratioToIngest?: number };
  isolation: {
    worker: { coldStartMs: { median: number; min: number; max: number }; firstBuildMs?: { median: number; min: number; max: number }; perMessageUs: number; inProcessUs: number; overheadUs: number; perSec: number; inProcessPerSec: number };
    /** The wasm tier next to the worker tier, from bench/lib/wasm_measure.ts in one process. */
    tiers: { wasm: TierFigures; worker: TierFigures };
    /** Through the host's directory watcher: new file → first ack, and the pause of a swap under load. */
    dropIn: { coldStartMs: { median: number; min: number; max: number }; swapPauseMs: { median: number; min: number; max: number; swaps: number } };
  };
  footprint: { hostRssIdleMb: number; hostRssLoadMb: number; natsRssIdleMb: number; natsRssLoadMb: number; bundleBytes: number; hostPrivateIdleMb?: number; hostTreePssIdleMb?: number; runtimeBareRssMb?: number };
  loadGenerator: string;
}

const _MB = 1024 * 1024;

/**
 * Run every section on one runtime; all processes are registered in `procs`.
 * @param rt runtime of the host and the probes
 */
export async function runSuite(rt: Runtime, plan: Plan, procs: Procs, say: (s: string) => void): Promise<RuntimeResult> {
  const nats = await startNats(procs);
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    const workers = await procs.tempDir("workers");
    await writeFile(join(workers, "park.ts"), PARK_HANDLER);
    await writeFile(join(workers, "sink.ts"), sinkHandler("sink"));
    await writeFile(join(workers, "parksenml.ts"), PARK_SENML_HANDLER);
    say(`${rt}: starting host`);
    const host = await startHost(procs, rt, workers, nats.url);
    await waitFor(async () => (await fetch(`${host.url}/readyz`)).ok, 30_000, "host ready");
    await sleep(plan.idleSettleMs);
    const hostRssIdle = await rssBytes(host.pid);
    const hostMem = await memoryOf(host.pid);
    const bareRss = await bareRuntimeRss(procs, rt, plan.idleSettleMs);
    const natsRssIdle = await rssBytes(nats.pid);
    const peak = { host: hostRssIdle, nats: natsRssIdle };
    const sampler = setInterval(() => {
      void rssBytes(host.pid).then((r) => (peak.host = Math.max(peak.host, r)));
      void rssBytes(nats.pid).then((r) => (peak.nats = Math.max(peak.nats, r)));
    }, 200);
    try {
      const dir = await procs.tempDir("wrk");
      const c = plan.connections;
      // Ceilings.
      say(`${rt}: raw JetStream publish ceiling`);
      // The best of a modest and a deep window: batched ingest keeps ~1600 publishes in flight.
      let pub = { publishPerSec: 0, window: 0 };
      for (const window of [64, 1024]) {
        await jsm.streams.purge("INGEST");
        const p = await runProbe<{ publishPerSec: number; window: number }>(procs, rt, "publish.ts",
          { mode: "publish", url: nats.url, subject: "ingest.park", stream: "INGEST", seconds: plan.seconds, window, concurrency: SINK_CONCURRENCY }, 120_000);
        if (p.publishPerSec > pub.publishPerSec) pub = p;
      }
      say(`${rt}: bare HTTP ceiling`);
      const bare = await _probeServer(procs, rt, "bare_http.ts", "bare");
      const http = await runWrk({ url: bare.url, body: cborReading(), contentType: "application/cbor", seconds: plan.seconds, connections: c, dir });
      await bare.stop();
      const ceilingSingle = Math.min(pub.publishPerSec, http.requestsPerSec);
      // Each single reading costs one HTTP request and one publish, one after the other.
      const additive = 1 / (1 / pub.publishPerSec + 1 / http.requestsPerSec);

      // Ingest, the handler parked so that nothing is dispatched meanwhile.
      const lastSeq = async () => (await jsm.streams.info("INGEST")).state.last_seq;
      const ingest = async (body: Uint8Array, type: string, ceiling: number, topic = "park"): Promise<IngestResult> => {
        // Each section starts from an empty stream: what the ceiling or an earlier section stored
        // would otherwise count as the parked handler's backlog (and trip back-pressure).
        await jsm.streams.purge("INGEST");
        const before = await lastSeq();
        const w = await runWrk({ url: `${host.url}/v1/ingest/${topic}`, body, contentType: type, seconds: plan.seconds, connections: c, dir });
        const stored = (await lastSeq()) - before;
        if (w.non2xx > 0) say(`${rt}: ${w.non2xx} answers were not 202 (kept as non2xx)`);
        return { readingsPerSec: stored / w.seconds, requestsPerSec: w.requestsPerSec, stored, ceilingPerSec: ceiling, ratio: stored / w.seconds / ceiling, non2xx: w.non2xx + w.socketErrors, latencyMs: w.latencyMs };
      };
      say(`${rt}: ingest, one reading per request`);
      const single = await ingest(cborReading(), "application/cbor", ceilingSingle);
      single.ratioAdditive = single.readingsPerSec / additive;

      // The minimal relay a user would write instead, alternately with the host (A B A B …).
      say(`${rt}: the minimal relay (Hono + nats.js, no validation) and Outpost, alternately`);
      const relayProc = await _probeServer(procs, rt, "relay.ts", "relay", { url: nats.url, subject: "ingest.park" });
      const relay: RuntimeResult["relay"] = { outpost: [], relay: [], ratios: [], medianRatio: 0 };
      for (let i = 0; i < (plan.coldRuns === 1 ? 1 : 3); i++) {
        relay.outpost.push((await ingest(cborReading(), "application/cbor", ceilingSingle)).readingsPerSec);
        await jsm.streams.purge("INGEST");
        const before = await lastSeq();
        const w = await runWrk({ url: relayProc.url, body: cborReading(), contentType: "application/cbor", seconds: plan.seconds, connections: c, dir });
        relay.relay.push(((await lastSeq()) - before) / w.seconds);
        relay.ratios.push(relay.outpost[i]! / relay.relay[i]!);
      }
      relay.medianRatio = [...relay.ratios].sort((a, b) => a - b)[Math.floor(relay.ratios.length / 2)]!;
      await relayProc.stop();
      say(`${rt}: ingest, ${plan.batch} readings per request`);
      const cborBatch = await ingest(cborSeq(plan.batch), "application/cbor-seq", pub.publishPerSec);
      const jsonBatch = await ingest(jsonArray(plan.batch), "application/json", pub.publishPerSec);
      say(`${rt}: ingest, SenML packs of ${plan.batch} records (JSON and CBOR)`);
      const senmlJson = await ingest(senmlPack(plan.batch, "json"), "application/senml+json", pub.publishPerSec, "parksenml");
      const senmlCbor = await ingest(senmlPack(plan.batch, "cbor"), "application/senml+cbor", pub.publishPerSec, "parksenml");

      // MQTT: a host of its own with an embedded nats-server (the listener is the embedded one's).
      say(`${rt}: MQTT ingest, QoS 1, next to HTTP on the same host`);
      const mqttPort = await freePort();
      const mq = await startHost(procs, rt, workers, undefined, ["--mqtt-port", String(mqttPort)]);
      await waitFor(async () => (await fetch(`${mq.url}/readyz`)).ok, 30_000, "the MQTT host ready");
      const httpSame = await runWrk({ url: `${mq.url}/v1/ingest/park`, body: cborReading(), contentType: "application/cbor", seconds: plan.seconds, connections: c, dir });
      const mqttRun = await runProbe<{ storedPerSec: number; pubackPerSec: number; messages: number; window: number }>(procs, "node", "mqtt.ts",
        { mqttPort, hostUrl: mq.url, auth: mq.auth, topic: "park", messages: plan.coldRuns === 1 ? 2_000 : 20_000, window: c }, 300_000);
      await mq.stop();
      const mqttResult: RuntimeResult["mqtt"] = { ...mqttRun, httpSameHostPerSec: httpSame.requestsPerSec, ratioToHttp: mqttRun.storedPerSec / httpSame.requestsPerSec };

      // What counting metrics costs ingest: the same host started with --no-metrics, alternately.
      say(`${rt}: ingest with and without metrics, alternately`);
      const plain = await startHost(procs, rt, workers, nats.url, ["--no-metrics"]);
      await waitFor(async () => (await fetch(`${plain.url}/readyz`)).ok, 30_000, "the --no-metrics host ready");
      const metricsCost: RuntimeResult["metricsCost"] = { withMetrics: [], without: [], ratios: [], medianRatio: 0 };
      for (let i = 0; i < (plan.coldRuns === 1 ? 1 : 3); i++) {
        for (const [h, into] of [[host, metricsCost.withMetrics], [plain, metricsCost.without]] as const) {
          await jsm.streams.purge("INGEST");
          into.push((await runWrk({ url: `${h.url}/v1/ingest/park`, body: cborReading(), contentType: "application/cbor", seconds: plan.seconds, connections: c, dir })).requestsPerSec);
        }
        metricsCost.ratios.push(metricsCost.withMetrics[i]! / metricsCost.without[i]!);
      }
      const sortedRatios = [...metricsCost.ratios].sort((a, b) => a - b);
      metricsCost.medianRatio = sortedRatios[Math.floor(sortedRatios.length / 2)]!;
      await plain.stop();

      // End to end.
      say(`${rt}: raw publish-and-consume ceiling`);
      const pubsub = await runProbe<{ consumedPerSec: number }>(procs, rt, "publish.ts",
        { mode: "pubsub", url: nats.url, subject: "ingest.ceiling", stream: "INGEST", seconds: plan.seconds, window: 64, concurrency: SINK_CONCURRENCY }, 120_000);
      say(`${rt}: end to end, sustained`);
      const acked = async () => {
        const v = (await (await fetch(`${host.url}/v1/handlers`, { headers: host.auth })).json()) as { handlers: { name: string; counts: { acked: number } }[] };
        return v.handlers.find((h) => h.name === "sink")?.counts.acked ?? 0;
      };
      // wrk on the sink: what was stored and what was acked meanwhile; then the backlog drains.
      const sinkLoad = async (cpus?: string) => {
        const a0 = await acked();
        const s0 = await lastSeq();
        const w = await runWrk({ url: `${host.url}/v1/ingest/sink`, body: cborReading(), contentType: "application/cbor", seconds: plan.seconds, connections: c, dir, cpus });
        const a1 = await acked();
        return { w, acked: a1 - a0, ingested: (await lastSeq()) - s0 };
      };
      const sinkDrained = (what: string) => waitFor(async () => {
        const i = await jsm.consumers.info("INGEST", "outpost-sink");
        return i.num_pending === 0 && i.num_ack_pending === 0;
      }, 120_000, what);
      const { w, acked: ackedDuring, ingested } = await sinkLoad();
      const backlog = (await jsm.consumers.info("INGEST", "outpost-sink")).num_pending;
      const t = performance.now();
      await sinkDrained("the sink backlog to drain");
      const drainSec = (performance.now() - t) / 1_000;
      const sustained = Math.min(ingested, ackedDuring) / w.seconds;
      // Latency: the client (this process, and wrk before it) gets CPU 1 to itself; the host, its
      // handler process and nats-server share CPU 0. "Half the sustained rate" is half of what the
      // system sustains on that one CPU (measured first, with wrk on CPU 1): half of the two-CPU
      // figure would load the one CPU to about its limit, and measure queueing at saturation.
      // Three runs (one in a quick run); the one with the median p99 is reported.
      const cpus = availableParallelism();
      const pinned = cpus >= 2 && (await pin([process.pid], "1")) && (await pin([host.pid, nats.pid], "0"));
      const runs: (LatencyResult & { cpu: LatencyCpu | undefined })[] = [];
      const halfRuns: typeof runs = [];
      const floorRuns: (Awaited<ReturnType<typeof openLoopFloor>> & { cpu: LatencyCpu | undefined })[] = [];
      const relayRuns: typeof floorRuns = [];
      let sustainedPinned: number | null = null;
      try {
        if (pinned) {
          say(`${rt}: end to end, sustained with the system on CPU 0 and wrk on CPU 1`);
          const p = await sinkLoad("1");
          sustainedPinned = Math.min(p.ingested, p.acked) / p.w.seconds;
          await sinkDrained("the sink backlog to drain (pinned)");
        }
        const rate = Math.max(10, (sustainedPinned ?? sustained) / 2);
        say(`${rt}: end to end latency at ${Math.round(rate)} readings/s (open loop)`);
        const sinkLoop = (at: number) => _withCpu(host.pid, nats.pid, at, () => openLoop({ url: `${host.url}/v1/ingest/sink`, body: cborReading(),
          contentType: "application/cbor", rate: at, seconds: plan.latencySeconds, connections: c, nc, jsm, stream: "INGEST", durable: "outpost-sink" }));
        for (let i = 0; i < (plan.coldRuns === 1 ? 1 : 3); i++) runs.push(await sinkLoop(rate));
        // Half the closed-loop rate is not half the CPU: one reading per loop turn costs more than
        // a reading among 64 in flight. So again at the rate that, at the CPU per reading just
        // measured, would keep the one CPU half busy, and what it took there (on this VM the CPU
        // per request grows as the rate falls, the bare HTTP server's too: it stays busy).
        const perReading = _meanCpu(runs.map((x) => x.cpu));
        if (perReading) {
          const halfRate = Math.max(10, 0.5e6 / (perReading.mainUs + perReading.childrenUs + perReading.natsUs));
          say(`${rt}: end to end latency at ${Math.round(halfRate)} readings/s, half a CPU at the CPU per reading above (open loop)`);
          for (let i = 0; i < runs.length; i++) halfRuns.push(await sinkLoop(halfRate));
        }
        // The floor: the same client and rate against the bare 202 server, on the same CPU (the
        // host and nats-server idle beside it): what scheduling and the client add by themselves.
        say(`${rt}: latency floor, the same open loop against a bare HTTP 202`);
        const otherLoop = (server: { url: string; pid: number }, withNats: boolean) => _withCpu(server.pid, withNats ? nats.pid : undefined, rate,
          () => openLoopFloor({ url: server.url, body: cborReading(), contentType: "application/cbor", rate, seconds: plan.latencySeconds, connections: c }));
        const floor = await _probeServer(procs, rt, "bare_http.ts", "bare-floor");
        try {
          if (pinned) await pin([floor.pid], "0");
          for (let i = 0; i < runs.length; i++) floorRuns.push(await otherLoop(floor, false));
        } finally {
          await floor.stop();
        }
        // The minimal relay at the same rate and on the same CPU: a peer that stores each reading
        // and does nothing else (no validation, no handler), due time to its 202.
        say(`${rt}: the minimal relay under the same open loop`);
        const relayAt = await _probeServer(procs, rt, "relay.ts", "relay-latency", { url: nats.url, subject: "ingest.park" });
        try {
          if (pinned) await pin([relayAt.pid], "0");
          for (let i = 0; i < runs.length; i++) {
            await jsm.streams.purge("INGEST", { filter: "ingest.park" });
            relayRuns.push(await otherLoop(relayAt, true));
          }
        } finally {
          await relayAt.stop();
        }
      } finally {
        if (cpus >= 2) await pin([process.pid, host.pid, nats.pid], `0-${cpus - 1}`);
      }
      const latencyPinning = pinned
        ? `client on CPU 1; host, its handler process and nats-server on CPU 0, which sustain ${Math.round(sustainedPinned!)} readings/s so (wrk on CPU 1)`
        : "not pinned (taskset missing, refused, or one CPU)";
      const { cpu: _cpu, ...latency } = _medianP99(runs);
      // Each reading end to end costs one HTTP request and one publish-consume-ack: the two add.
      const additiveE2e = 1 / (1 / http.requestsPerSec + 1 / pubsub.consumedPerSec);

      say(`${rt}: isolation (cold start, per-message overhead)`);
      const iso = await runProbe<{ coldStartMs: { median: number; min: number; max: number }; firstBuildMs: { median: number; min: number; max: number }; perMessage: { workerUs: number; inProcessUs: number; overheadUs: number; workerPerSec: number; inProcessPerSec: number } }>(
        procs, rt, "isolation.ts", { url: nats.url, coldRuns: plan.coldRuns, seqMessages: plan.seqMessages, parMessages: plan.parMessages, window: SINK_CONCURRENCY }, 180_000);
      say(`${rt}: drop-in cold start and swap pause through the directory watcher`);
      const dropIn = await runProbe<RuntimeResult["isolation"]["dropIn"]>(procs, rt, "dropin.ts",
        { url: host.url, auth: host.auth, nats: nats.url, workersDir: workers, runs: plan.coldRuns, swaps: plan.coldRuns === 1 ? 1 : 3 }, 180_000);
      say(`${rt}: wasm tier next to the worker tier`);
      const tiers = await runProbe<RuntimeResult["isolation"]["tiers"]>(procs, rt, "wasm.ts",
        { isolates: plan.coldRuns === 1 ? 2 : 10, messages: Math.max(50, Math.floor(plan.seqMessages / 5)) }, 180_000);
      clearInterval(sampler);
      const { median, min, max } = iso.coldStartMs;
      await host.stop();
      return {
        runtime: rt,
        ceilings: { publishPerSec: pub.publishPerSec, httpPerSec: http.requestsPerSec, pubsubPerSec: pubsub.consumedPerSec, publishWindow: pub.window, additivePerSec: additive },
        relay,
        ingest: { single, cborBatch, jsonBatch, senmlJson, senmlCbor },
        mqtt: mqttResult,
        metricsCost,
        endToEnd: {
          sustainedPerSec: sustained,
          ingestPerSec: ingested / w.seconds,
          ratio: sustained / pubsub.consumedPerSec,
          additivePerSec: additiveE2e,
          ratioAdditive: sustained / additiveE2e,
          ratioToIngest: sustained / single.readingsPerSec,
          backlogAtEnd: backlog,
          drainPerSec: backlog > 0 ? backlog / drainSec : null,
          latency,
          latencyRuns: runs.map((x) => x.p99),
          latencyCpu: _meanCpu(runs.map((x) => x.cpu)),
          ...(halfRuns.length ? { latencyHalfCpu: { ..._medianP99(halfRuns), runs: halfRuns.map((x) => x.p99), cpu: _meanCpu(halfRuns.map((x) => x.cpu)) } } : {}),
          ...(floorRuns.length ? { latencyFloor: { ..._medianP99(floorRuns), runs: floorRuns.map((x) => x.p99), cpu: _meanCpu(floorRuns.map((x) => x.cpu)) } } : {}),
          ...(relayRuns.length ? { latencyRelay: { ..._medianP99(relayRuns), runs: relayRuns.map((x) => x.p99), cpu: _meanCpu(relayRuns.map((x) => x.cpu)) } } : {}),
          latencyPinning,
          sustainedPinnedPerSec: sustainedPinned,
        },
        isolation: {
          worker: {
            coldStartMs: { median, min, max },
            firstBuildMs: { median: iso.firstBuildMs.median, min: iso.firstBuildMs.min, max: iso.firstBuildMs.max },
            perMessageUs: iso.perMessage.workerUs,
            inProcessUs: iso.perMessage.inProcessUs,
            overheadUs: iso.perMessage.overheadUs,
            perSec: iso.perMessage.workerPerSec,
            inProcessPerSec: iso.perMessage.inProcessPerSec,
          },
          tiers,
          dropIn,
        },
        footprint: {
          hostRssIdleMb: hostRssIdle / _MB,
          runtimeBareRssMb: bareRss / _MB,
          hostPrivateIdleMb: hostMem.anonBytes / _MB,
          hostTreePssIdleMb: hostMem.treePssBytes / _MB,
          hostRssLoadMb: peak.host / _MB,
          natsRssIdleMb: natsRssIdle / _MB,
          natsRssLoadMb: peak.nats / _MB,
          bundleBytes: (await stat(join(ROOT, "bundles/outpost.js"))).size,
        },
        loadGenerator: `wrk -t1 -c${c} (closed loop); latency: Node http client, open loop, ${c} connections`,
      };
    } finally {
      clearInterval(sampler);
    }
  } finally {
    await nc.close().catch(() => {});
    await procs.stopAll();
  }
}

/**
 * RSS of the bare runtime running an idle timer, sampled like the host's: the floor under the
 * host's own figure (on Node most of it is the binary's file pages).
 */
async function bareRuntimeRss(procs: Procs, rt: Runtime, settleMs: number): Promise<number> {
  const dir = await procs.tempDir("bare");
  const file = join(dir, "idle.mjs");
  await writeFile(file, "setInterval(() => {}, 1000);\n");
  const [cmd, ...pre] = tsCommand(rt, file);
  // Node without the TypeScript loader the bench's probes use.
  const p = procs.spawn(`bare-${rt}`, rt === "node" ? [cmd!, file] : [cmd!, ...pre.filter((a) => a !== "--unstable-worker-options")]);
  await sleep(Math.min(settleMs, 2_000));
  const rss = await rssBytes(p.pid);
  await p.stop();
  return rss;
}

/** A probe that serves HTTP on this runtime (`bench/probes/bare_http.ts`, `relay.ts`), listening. */
async function _probeServer(procs: Procs, rt: Runtime, file: string, name: string, args?: object): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const p = procs.spawn(`${name}-${rt}`, [...tsCommand(rt, join(ROOT, "bench/probes", file)), ...(args ? [JSON.stringify(args)] : [])]);
  const port = (await waitFor(() => /\{"port":(\d+)\}/.exec(p.output()), 30_000, name))[1];
  return { url: `http://127.0.0.1:${port}/`, pid: p.pid, stop: () => p.stop() };
}

/**
 * CPU time per reading (µs) of an open-loop run, from the CPU the processes used during it: the
 * first process (with its threads), its child processes (the handler process; esbuild idles), and
 * the second (nats-server); `busy` is the share of one CPU they took together at `rate`.
 */
export interface LatencyCpu {
  mainUs: number;
  childrenUs: number;
  natsUs: number;
  busy: number;
}

/** `run` (an open loop at `rate`) with the CPU per reading that `main` (and nats-server, when given) took during it. */
async function _withCpu<T extends { sent: number }>(main: number, nats: number | undefined, rate: number, run: () => Promise<T>): Promise<T & { cpu: LatencyCpu | undefined }> {
  const now = async () => [await cpuMs(main), nats === undefined ? 0 : (await cpuMs(nats))?.self] as const;
  const [a, an] = await now();
  const r = await run();
  const [b, bn] = await now();
  if (!a || !b || an === undefined || bn === undefined || !r.sent) return { ...r, cpu: undefined };
  const us = (ms: number) => (ms * 1_000) / r.sent;
  const cpu = { mainUs: us(b.self - a.self), childrenUs: us(Math.max(0, b.children - a.children)), natsUs: us(bn - an) };
  return { ...r, cpu: { ...cpu, busy: ((cpu.mainUs + cpu.childrenUs + cpu.natsUs) * rate) / 1e6 } };
}

function _meanCpu(runs: (LatencyCpu | undefined)[]): LatencyCpu | undefined {
  const ok = runs.filter((r): r is LatencyCpu => r !== undefined);
  if (!ok.length) return undefined;
  const m = (k: keyof LatencyCpu) => ok.reduce((t, r) => t + r[k], 0) / ok.length;
  return { mainUs: m("mainUs"), childrenUs: m("childrenUs"), natsUs: m("natsUs"), busy: m("busy") };
}

/** Of several open-loop runs, the one with the median p99. */
function _medianP99<T extends { p99: number }>(runs: T[]): T {
  return [...runs].sort((a, b) => a.p99 - b.p99)[Math.floor(runs.length / 2)]!;
}
