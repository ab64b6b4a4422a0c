/**
 * The hub's side: `outpost hub attach` makes, on the hub, the streams that source a device's
 * OUTBOX (and, when asked, its urgent results and its recordings) through the device's JetStream
 * domain; nats-server itself then copies them, once and in order, resuming where it stopped after
 * any outage. `outpost hub status` reads those streams' source positions and the devices' reports.
 * @module
 */
import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig, type StreamInfo } from "@nats-io/jetstream";
import { DEVICE_REPORTS, UPLINK } from "../broker/subjects.ts";
import { STREAMS } from "../broker/streams.ts";
import { recordStream } from "../record/streams.ts";
import { DEVICES_STREAM, ensureDevicesStream } from "./link.ts";

/** How long the hub keeps what it has of a device, unless told otherwise. */
export const HUB_MAX_AGE_MS = 30 * 86_400_000;

/** What to copy from one device. */
export interface AttachOptions {
  /** The device's JetStream domain (`--nats-domain` on the device). */
  device: string;
  /** A subject filter of OUTBOX (`out.alerts.>`) copied by a source of its own, ahead of the bulk. */
  urgent?: string | undefined;
  /** Topics whose recordings (RECORD_<topic>, raw readings) the hub archives too. */
  record?: string[] | undefined;
  /** How long the hub keeps what it copied; default 30 days. */
  maxAgeMs?: number | undefined;
  /** Bytes the hub keeps per stream; default no limit. */
  maxBytes?: number | undefined;
  /** Copies on a clustered hub; default 1. */
  replicas?: number | undefined;
}

/** The hub streams of a device, by role. */
export function hubStreams(device: string): { outbox: string; urgent: string; record: (topic: string) => string } {
  return { outbox: `OUTBOX_${device}`, urgent: `URGENT_${device}`, record: (t) => `${recordStream(t)}_${device}` };
}

/**
 * Create (or update) the hub's streams for one device. Idempotent.
 * @returns the stream names, and which were new
 */
export async function attachDevice(jsm: JetStreamManager, o: AttachOptions): Promise<{ stream: string; source: string; filter: string | null; created: boolean }[]> {
  if (!/^[A-Za-z0-9_-]+$/.test(o.device)) throw new Error(`--device ${JSON.stringify(o.device)}: the device's JetStream domain (letters, digits, - and _)`);
  const names = hubStreams(o.device);
  const api = `$JS.${o.device}.API`;
  const base = (name: string, source: string, filter: string | undefined, what: string): Partial<StreamConfig> & { name: string } => ({
    name,
    description: `outpost: ${what} of device ${o.device}, copied from its stream ${source} through its JetStream domain`,
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: (o.maxAgeMs ?? HUB_MAX_AGE_MS) * 1e6,
    max_bytes: o.maxBytes ?? -1,
    num_replicas: o.replicas ?? 1,
    sources: [{ name: source, external: { api, deliver: "" }, ...(filter ? { filter_subject: filter } : {}) }],
  });
  const wanted = [
    { cfg: base(names.outbox, STREAMS.outbox, undefined, "the results"), source: STREAMS.outbox, filter: null },
    ...(o.urgent ? [{ cfg: base(names.urgent, STREAMS.outbox, o.urgent, `the urgent results (${o.urgent})`), source: STREAMS.outbox, filter: o.urgent }] : []),
    ...(o.record ?? []).map((t) => ({ cfg: base(names.record(t), recordStream(t), undefined, `the recorded readings of topic ${t}`), source: recordStream(t), filter: null })),
  ];
  const out = [];
  await ensureDevicesStream(jsm);
  for (const w of wanted) {
    let created = false;
    try {
      const cur = await jsm.streams.info(w.cfg.name);
      await jsm.streams.update(w.cfg.name, { ...cur.config, ...w.cfg });
    } catch (e) {
      if (!(e instanceof JetStreamApiError) || !/not found/i.test(e.message)) throw e;
      await jsm.streams.add(w.cfg);
      created = true;
    }
    out.push({ stream: w.cfg.name, source: w.source, filter: w.filter, created });
  }
  return out;
}

/** One row of `outpost hub status`. */
export interface DeviceStatus {
  device: string;
  /** When the device last reported (ISO) and how long ago, in seconds. */
  lastReport: string | null;
  lastReportAgeSeconds: number | null;
  /** Per hub stream of the device: messages copied, the source's lag (messages not yet copied) and last activity. */
  streams: { stream: string; messages: number; bytes: number; lag: number | null; activeSecondsAgo: number | null; error: string | null }[];
  /** Results behind: the OUTBOX source's lag, and in bytes at the device's mean result size. */
  behind: { results: number | null; bytes: number | null };
  /** The device's last report: release, canaries, OUTBOX. */
  report: Record<string, unknown> | null;
}

/**
 * Every device known to the hub: attached (a stream sources its OUTBOX) or reporting.
 */
export async function hubStatus(jsm: JetStreamManager): Promise<DeviceStatus[]> {
  const reports = new Map<string, { at: Date; body: Record<string, unknown> }>();
  let info: StreamInfo | undefined;
  try {
    info = await jsm.streams.info(DEVICES_STREAM, { subjects_filter: `${DEVICE_REPORTS}.*` });
  } catch (e) {
    if (!(e instanceof JetStreamApiError)) throw e;
  }
  for (const subject of Object.keys(info?.state.subjects ?? {})) {
    try {
      const m = await jsm.streams.getMessage(DEVICES_STREAM, { last_by_subj: subject });
      if (m) reports.set(subject.slice(DEVICE_REPORTS.length + 1), { at: m.time, body: m.json<Record<string, unknown>>() });
    } catch { /* removed meanwhile */ }
  }
  const streams = new Map<string, StreamInfo[]>();
  for await (const s of jsm.streams.list()) {
    const m = /^(OUTBOX|URGENT|RECORD_.+)_([A-Za-z0-9_-]+)$/.exec(s.config.name);
    const src = s.config.sources?.[0]?.external?.api;
    const fwd = s.config.subjects?.[0]?.startsWith(`${UPLINK}.`) ? s.config.subjects[0].split(".")[1] : undefined;
    if (!m || (!src?.startsWith("$JS.") && !fwd)) continue;
    const device = fwd ?? src!.slice(4, -4);
    if (!s.config.name.endsWith(`_${device}`)) continue;
    streams.set(device, [...(streams.get(device) ?? []), s]);
  }
  const now = Date.now();
  const rows: DeviceStatus[] = [];
  for (const device of [...new Set([...reports.keys(), ...streams.keys()])].sort()) {
    const r = reports.get(device);
    const ss = (streams.get(device) ?? []).sort((a, b) => a.config.name.localeCompare(b.config.name));
    const outbox = ss.find((s) => s.config.name === hubStreams(device).outbox);
    const ob = (r?.body.outbox ?? null) as { messages?: number; bytes?: number } | null;
    // Sourced: the source's lag. Forwarded under --uplink-rate: what the device says it still holds.
    const up = (r?.body.uplink ?? null) as { pending?: { bulk?: number } } | null;
    const lag = outbox?.sources?.[0]?.lag ?? up?.pending?.bulk ?? null;
    const mean = ob?.messages ? (ob.bytes ?? 0) / ob.messages : null;
    rows.push({
      device,
      lastReport: r ? r.at.toISOString() : null,
      lastReportAgeSeconds: r ? Math.round((now - r.at.getTime()) / 100) / 10 : null,
      streams: ss.map((s) => {
        const src = s.sources?.[0];
        return {
          stream: s.config.name, messages: s.state.messages, bytes: s.state.bytes, lag: src?.lag ?? null,
          activeSecondsAgo: src && src.active >= 0 ? Math.round(src.active / 1e8) / 10 : null, error: src?.error?.description ?? null,
        };
      }),
      behind: { results: lag, bytes: lag !== null && mean !== null ? Math.round(lag * mean) : null },
      report: r?.body ?? null,
    });
  }
  return rows;
}

/** The rows in Prometheus text format (for node_exporter's textfile collector, or a push). */
export function hubStatusMetrics(rows: DeviceStatus[]): string {
  const out: string[] = [];
  const g = (name: string, help: string, samples: [Record<string, string>, number | null][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [l, v] of samples) {
      if (v === null) continue;
      out.push(`${name}{${Object.entries(l).map(([k, x]) => `${k}="${x.replace(/["\\\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`))}"`).join(",")}} ${v}`);
    }
  };
  g("outpost_hub_device_report_age_seconds", "Seconds since the device last reported to the hub.", rows.map((r) => [{ device: r.device }, r.lastReportAgeSeconds]));
  g("outpost_hub_device_behind_results", "Results of the device's OUTBOX the hub has not copied yet (the source's lag).", rows.map((r) => [{ device: r.device }, r.behind.results]));
  g("outpost_hub_device_behind_bytes", "The same, in bytes at the device's mean result size.", rows.map((r) => [{ device: r.device }, r.behind.bytes]));
  g("outpost_hub_device_release", "The release the device runs (0: its --workers directory).", rows.map((r) => [{ device: r.device }, _num((r.report?.release as { active?: number } | undefined)?.active)]));
  const canary = (r: DeviceStatus) => r.report?.canary as { release: number; state: string; share: number } | null | undefined;
  g("outpost_hub_device_canary", "1 for the device's canary release and its state (running, promoted, rolled back).",
    rows.filter((r) => canary(r)).map((r) => [{ device: r.device, release: String(canary(r)!.release), state: canary(r)!.state }, 1]));
  g("outpost_hub_device_canary_share", "The share of readings a running canary release takes on the device.",
    rows.filter((r) => canary(r)?.state === "running").map((r) => [{ device: r.device, release: String(canary(r)!.release) }, canary(r)!.share]));
  return `${out.join("\n")}\n`;
}

const _num = (x: unknown) => (typeof x === "number" ? x : null);
