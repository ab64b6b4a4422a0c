/** The printed table and the comparison with an earlier results file. */
import { bullmqProcessRate, type BullmqResult, type TargetCheck } from "./targets.ts";
import type { LatencyCpu, RuntimeResult } from "./suite.ts";

const _n = (x: number | null | undefined, d = 0) => (x === null || x === undefined || Number.isNaN(x) ? "n/a" : x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));

/** "; CPU per reading: …, so the one CPU was N % busy" for a latency row (nothing when not measured). */
function _cpuNote(c: LatencyCpu | undefined, main: string, children?: string): string {
  if (!c) return "";
  const parts = [`${main} ${_n(c.mainUs)}`, ...(children && c.childrenUs >= 1 ? [`${children} ${_n(c.childrenUs)}`] : []), ...(c.natsUs >= 1 ? [`nats-server ${_n(c.natsUs)}`] : [])];
  return `; CPU per reading: ${parts.join(" + ")} µs, so the one CPU was ${_n(c.busy * 100)} % busy`;
}
const _r = (x: number) => `${(x * 100).toFixed(1)}%`;

const _median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** Markdown table of one runtime's figures. */
export function table(r: RuntimeResult, b: BullmqResult | undefined, targets: TargetCheck[]): string {
  const rows: string[][] = [
    ["raw JetStream publish (ceiling 1)", `${_n(r.ceilings.publishPerSec)} msg/s`, "", `${r.ceilings.publishWindow} in flight, no HTTP`],
    ["bare HTTP 202 (ceiling 2)", `${_n(r.ceilings.httpPerSec)} req/s`, "", "same serve() as the host"],
    ["additive ceiling 1/(1/publish + 1/HTTP)", `${_n(r.ceilings.additivePerSec)} readings/s`, "", "a single reading costs one request and one publish"],
    ["ingest, 1 reading/request", `${_n(r.ingest.single.readingsPerSec)} readings/s`, _r(r.ingest.single.ratio), `of min(1, 2); ${_r(r.ingest.single.ratioAdditive ?? NaN)} of the additive ceiling; p50 ${_n(r.ingest.single.latencyMs.p50, 2)} ms, p99 ${_n(r.ingest.single.latencyMs.p99, 2)} ms`],
    ["minimal relay (Hono + nats.js, no validation)", `${_n(_median(r.relay.relay))} readings/s`, `${r.relay.medianRatio.toFixed(2)}×`, `Outpost ÷ relay, median of ${r.relay.ratios.length} A/B pairs (${r.relay.ratios.map((x) => x.toFixed(2)).join(", ")}); Outpost ${r.relay.outpost.map((x) => _n(x)).join(", ")}/s; the relay itself reaches ${_r(_median(r.relay.relay) / r.ceilings.additivePerSec)} of the additive ceiling`],
    ["ingest, 100/request CBOR-seq", `${_n(r.ingest.cborBatch.readingsPerSec)} readings/s`, _r(r.ingest.cborBatch.ratio), `of ceiling 1; ${_n(r.ingest.cborBatch.requestsPerSec)} req/s`],
    ["ingest, 100/request JSON array", `${_n(r.ingest.jsonBatch.readingsPerSec)} readings/s`, _r(r.ingest.jsonBatch.ratio), `of ceiling 1; ${_n(r.ingest.jsonBatch.requestsPerSec)} req/s`],
    ["ingest, SenML pack of 100 (JSON)", `${_n(r.ingest.senmlJson.readingsPerSec)} readings/s`, _r(r.ingest.senmlJson.ratio), `of ceiling 1; resolved into records, each validated; ${_n(r.ingest.senmlJson.requestsPerSec)} req/s`],
    ["ingest, SenML pack of 100 (CBOR)", `${_n(r.ingest.senmlCbor.readingsPerSec)} readings/s`, _r(r.ingest.senmlCbor.ratio), `of ceiling 1; integer labels; ${_n(r.ingest.senmlCbor.requestsPerSec)} req/s`],
    ["ingest over MQTT, QoS 1", `${_n(r.mqtt.storedPerSec)} readings/s`, _r(r.mqtt.ratioToHttp), `of HTTP single ingest on the same host (${_n(r.mqtt.httpSameHostPerSec)}/s, embedded nats-server); PUBACKs ${_n(r.mqtt.pubackPerSec)}/s, ${r.mqtt.window} in flight`],
    ["ingest with metrics / with --no-metrics", _r(r.metricsCost.medianRatio), "", `median of ${r.metricsCost.ratios.length} A/B pairs (${r.metricsCost.ratios.map((x) => x.toFixed(3)).join(", ")}); ${r.metricsCost.withMetrics.map((x) => _n(x)).join(", ")} vs ${r.metricsCost.without.map((x) => _n(x)).join(", ")} req/s`],
    ["raw publish + consume + ack (ceiling 3)", `${_n(r.ceilings.pubsubPerSec)} msg/s`, "", "same client, one process"],
    ["end to end sustained", `${_n(r.endToEnd.sustainedPerSec)} readings/s`, _r(r.endToEnd.ratio), `of ceiling 3; ingested ${_n(r.endToEnd.ingestPerSec)}/s, backlog ${_n(r.endToEnd.backlogAtEnd)}, drain ${_n(r.endToEnd.drainPerSec)}/s${r.endToEnd.ratioAdditive !== undefined ? `; ${_r(r.endToEnd.ratioAdditive)} of its additive ceiling 1/(1/HTTP + 1/ceiling 3) = ${_n(r.endToEnd.additivePerSec)}/s; ${_r(r.endToEnd.ratioToIngest ?? NaN)} of single-reading ingest` : ""}`],
    ...(r.endToEnd.sustainedPinnedPerSec ? [["end to end sustained, system on one CPU", `${_n(r.endToEnd.sustainedPinnedPerSec)} readings/s`, "", "host, handler process and nats-server on CPU 0, wrk on CPU 1: the rate the latency probe takes half of"] as [string, string, string, string]] : []),
    ["end to end latency (open loop)", `p50 ${_n(r.endToEnd.latency.p50, 2)} / p99 ${_n(r.endToEnd.latency.p99, 2)} / p999 ${_n(r.endToEnd.latency.p999, 2)} ms`, "", `at ${_n(r.endToEnd.latency.ratePerSec)}/s, ${_n(r.endToEnd.latency.acked)} of ${_n(r.endToEnd.latency.sent)} acked${r.endToEnd.latency.acceptedP99 === undefined ? "" : `; due to 202 (stored) p50 ${_n(r.endToEnd.latency.acceptedP50 ?? NaN, 2)} / p99 ${_n(r.endToEnd.latency.acceptedP99, 2)} ms`}; the median-p99 run of ${r.endToEnd.latencyRuns.length} (p99s ${r.endToEnd.latencyRuns.map((x) => _n(x, 1)).join(", ")} ms)${r.endToEnd.latencyPinning ? `; ${r.endToEnd.latencyPinning}` : ""}${_cpuNote(r.endToEnd.latencyCpu, "host", "its handler process")}`],
    ...(r.endToEnd.latencyHalfCpu ? [["end to end latency at a lower rate (open loop)", `p50 ${_n(r.endToEnd.latencyHalfCpu.p50, 2)} / p99 ${_n(r.endToEnd.latencyHalfCpu.p99, 2)} / p999 ${_n(r.endToEnd.latencyHalfCpu.p999, 2)} ms`, "", `at ${_n(r.endToEnd.latencyHalfCpu.ratePerSec)}/s, where the CPU per reading above would take half the CPU, ${_n(r.endToEnd.latencyHalfCpu.acked)} of ${_n(r.endToEnd.latencyHalfCpu.sent)} acked; due to 202 p99 ${_n(r.endToEnd.latencyHalfCpu.acceptedP99 ?? NaN, 2)} ms; p99s ${r.endToEnd.latencyHalfCpu.runs.map((x) => _n(x, 1)).join(", ")} ms${_cpuNote(r.endToEnd.latencyHalfCpu.cpu, "host", "its handler process")}`] as [string, string, string, string]] : []),
    ...(r.endToEnd.latencyFloor ? [["latency floor: the same open loop against a bare HTTP 202", `p50 ${_n(r.endToEnd.latencyFloor.p50, 2)} / p99 ${_n(r.endToEnd.latencyFloor.p99, 2)} ms`, "", `same client, rate, connections and CPU; what the machine's scheduling and the client add by themselves (p99s ${r.endToEnd.latencyFloor.runs.map((x) => _n(x, 1)).join(", ")} ms)${_cpuNote(r.endToEnd.latencyFloor.cpu, "the server")}`] as [string, string, string, string]] : []),
    ...(r.endToEnd.latencyRelay ? [["the minimal relay under the same open loop (due to 202)", `p50 ${_n(r.endToEnd.latencyRelay.p50, 2)} / p99 ${_n(r.endToEnd.latencyRelay.p99, 2)} ms`, "", `stores each reading, nothing else (no validation, no handler); compare Outpost's due to 202 (p99s ${r.endToEnd.latencyRelay.runs.map((x) => _n(x, 1)).join(", ")} ms)${_cpuNote(r.endToEnd.latencyRelay.cpu, "the relay")}`] as [string, string, string, string]] : []),
    ["worker cold start (file built once before → first ack)", `${_n(r.isolation.worker.coldStartMs.median, 1)} ms`, "", `min ${_n(r.isolation.worker.coldStartMs.min, 1)}, max ${_n(r.isolation.worker.coldStartMs.max, 1)}; the build kept from before`],
    ...(r.isolation.worker.firstBuildMs ? [["worker cold start, first build (new file → first ack)", `${_n(r.isolation.worker.firstBuildMs.median, 1)} ms`, "", `min ${_n(r.isolation.worker.firstBuildMs.min, 1)}, max ${_n(r.isolation.worker.firstBuildMs.max, 1)}; esbuild included`] as [string, string, string, string]] : []),
    ["worker per-message cost", `${_n(r.isolation.worker.perMessageUs, 1)} µs`, "", `in-process ${_n(r.isolation.worker.inProcessUs, 1)} µs (+${_n(r.isolation.worker.overheadUs, 1)} µs); ${_n(r.isolation.worker.perSec)} vs ${_n(r.isolation.worker.inProcessPerSec)} msg/s pipelined`],
    ["drop-in cold start (file written → first ack)", `${_n(r.isolation.dropIn.coldStartMs.median, 1)} ms`, "", `through the watcher (50 ms debounce included); min ${_n(r.isolation.dropIn.coldStartMs.min, 1)}, max ${_n(r.isolation.dropIn.coldStartMs.max, 1)}`],
    ["swap pause (old last ack → new first ack)", `${_n(r.isolation.dropIn.swapPauseMs.median, 1)} ms`, "", `median of ${r.isolation.dropIn.swapPauseMs.swaps} swaps at 200 readings/s; min ${_n(r.isolation.dropIn.swapPauseMs.min, 1)}, max ${_n(r.isolation.dropIn.swapPauseMs.max, 1)}`],
    ["wasm tier cold start / per message / RSS per idle sandbox", `${_n(r.isolation.tiers.wasm.coldStartMs, 1)} ms / ${_n(r.isolation.tiers.wasm.perMessageUs, 1)} µs / ${_n(r.isolation.tiers.wasm.rssPerIsolateBytes / 1048576, 2)} MiB`, "", `${r.isolation.tiers.wasm.isolates} sandboxes; the start with a spare sandbox waiting${r.isolation.tiers.wasm.coldStartBackToBackMs === undefined ? "" : `, ${_n(r.isolation.tiers.wasm.coldStartBackToBackMs, 1)} ms back to back (no spare)`}`],
    ["worker tier cold start / per message / RSS per idle worker", `${_n(r.isolation.tiers.worker.coldStartMs, 1)} ms / ${_n(r.isolation.tiers.worker.perMessageUs, 1)} µs / ${_n(r.isolation.tiers.worker.rssPerIsolateBytes / 1048576, 2)} MiB`, "", `${r.isolation.tiers.worker.isolates} workers, same handler${r.isolation.tiers.worker.rssBelowNoise ? "; the RSS difference was below the process's noise (shown as 0)" : ""}`],
    ["host RSS idle / under load", `${_n(r.footprint.hostRssIdleMb, 1)} / ${_n(r.footprint.hostRssLoadMb, 1)} MB`, "", r.footprint.runtimeBareRssMb ? `the bare runtime idle: ${_n(r.footprint.runtimeBareRssMb, 1)} MB` : ""],
    ...(r.footprint.hostPrivateIdleMb !== undefined ? [["host idle: private memory / with its children (PSS)", `${_n(r.footprint.hostPrivateIdleMb, 1)} / ${_n(r.footprint.hostTreePssIdleMb ?? 0, 1)} MB`, "",
      "RssAnon of the host; the proportional set size of the host, its handler process and esbuild (when running), the runtime's shared binary counted once"] as [string, string, string, string]] : []),
    ["nats-server RSS idle / under load", `${_n(r.footprint.natsRssIdleMb, 1)} / ${_n(r.footprint.natsRssLoadMb, 1)} MB`, "", ""],
    ["bundles/outpost.js", `${_n(r.footprint.bundleBytes / 1024, 1)} KB`, "", ""],
  ];
  if (b) {
    rows.push(["BullMQ enqueue", `${_n(b.enqueuePerSec)} jobs/s`, "", `${b.producers} producers`]);
    rows.push(["BullMQ process", `${_n(bullmqProcessRate(b))} jobs/s`, "", `drain ${_n(b.drainPerSec)}/s, sustained ${_n(b.sustained.processPerSec)}/s; concurrency ${b.concurrency}`]);
    if (b.nodeRed) {
      const n = b.nodeRed;
      rows.push("perSec" in n
        ? [`Node-RED ${n.version} flow: http in → function (the check) → http response (Node)`, `${_n(n.perSec)} readings/s`, r.runtime === "node" ? `${(r.endToEnd.sustainedPerSec / n.perSec).toFixed(2)}×` : "",
          `Outpost end to end ÷ this; JSON reading, ${n.connections} connections, p99 ${_n(n.p99Ms, 2)} ms, non-2xx ${n.non2xx}; in memory only: not durable, not isolated`]
        : ["Node-RED flow (Node)", "not run", "", n.error]);
    }
    if (b.pipeline) {
      rows.push(["Hono + valibot + BullMQ over HTTP (Node)", `${_n(b.pipeline.sustainedPerSec)} readings/s`, r.runtime === "node" ? `${(r.endToEnd.sustainedPerSec / b.pipeline.sustainedPerSec).toFixed(2)}×` : "",
        `Outpost end to end ÷ this; accepted ${_n(b.pipeline.acceptedPerSec)}/s, completed ${_n(b.pipeline.completedPerSec)}/s, backlog ${_n(b.pipeline.backlogAtEnd)}`]);
    }
  }
  const head = `| ${r.runtime} | measured | ratio | notes |\n|---|---:|---:|---|\n`;
  const body = rows.map((x) => `| ${x.join(" | ")} |`).join("\n");
  const tt = `\n\n| target | wanted | measured | met |\n|---|---|---|---|\n` +
    targets.map((t) => `| ${t.name} | ${t.target} | ${t.measured} | ${t.met ? "yes" : "**no**"} |`).join("\n");
  return head + body + tt;
}

/** Every numeric leaf of a JSON value by its dotted path. */
export function numericLeaves(v: unknown, prefix = "", out = new Map<string, number>()): Map<string, number> {
  if (typeof v === "number" && Number.isFinite(v)) out.set(prefix, v);
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) numericLeaves(x, prefix ? `${prefix}.${k}` : k, out);
  return out;
}

/** Lines `path: old → new (±x%)` for the figures both results hold. */
export function compare(previous: unknown, current: unknown): string {
  const a = numericLeaves(previous);
  const b = numericLeaves(current);
  const lines: string[] = [];
  for (const [k, nv] of b) {
    if (!/PerSec|Us$|Ms|p50|p99|p999|ratio|Mb$|Bytes/.test(k) || !a.has(k)) continue;
    const ov = a.get(k)!;
    const d = ov === 0 ? 0 : ((nv - ov) / Math.abs(ov)) * 100;
    lines.push(`${k}: ${_n(ov, 2)} → ${_n(nv, 2)} (${d >= 0 ? "+" : ""}${d.toFixed(1)}%)`);
  }
  return lines.length ? lines.join("\n") : "(no figure in common)";
}
