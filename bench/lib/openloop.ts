/**
 * Fixed-rate, open-loop load with end-to-end latency: each request is due at a fixed time and
 * its latency runs from that time (not from when a connection was free, so queueing counts),
 * to the moment nats-server reports the handler's ack (consumer ack advisories sampled at 100%).
 */
import { Agent, request } from "node:http";
import type { NatsConnection } from "@nats-io/nats-core";
import type { JetStreamManager } from "@nats-io/jetstream";

/** Latency result in ms. */
export interface LatencyResult {
  ratePerSec: number;
  sent: number;
  acked: number;
  failed: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Due time to the 202 (stored in JetStream), ms: the ingest half of the latency. */
  acceptedP50?: number;
  acceptedP99?: number;
  connections: number;
}

/** Options of {@link openLoop}. */
export interface OpenLoopOptions {
  url: string;
  body: Uint8Array;
  contentType: string;
  rate: number;
  seconds: number;
  connections: number;
  nc: NatsConnection;
  jsm: JetStreamManager;
  stream: string;
  durable: string;
}

/** The requests of one open-loop run: each due at a fixed time, `done` told its status, body and due time. */
async function _drive(o: Pick<OpenLoopOptions, "url" | "body" | "contentType" | "rate" | "seconds" | "connections">,
  done: (status: number | undefined, body: string, at: number) => void): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections });
  const inFlight: Promise<void>[] = [];
  const total = Math.max(1, Math.round(o.rate * o.seconds));
  const t0 = performance.now() + 50;
  const post = (at: number) =>
    new Promise<void>((res) => {
      const req = request(o.url, { method: "POST", agent, headers: { "content-type": o.contentType, "content-length": o.body.length } }, (r) => {
        let s = "";
        r.on("data", (d) => (s += d));
        r.on("end", () => {
          done(r.statusCode, s, at);
          res();
        });
      });
      req.on("error", () => (done(undefined, "", at), res()));
      req.end(o.body);
    });
  let i = 0;
  while (i < total) {
    const now = performance.now();
    while (i < total && t0 + (i * 1_000) / o.rate <= now) {
      inFlight.push(post(t0 + (i * 1_000) / o.rate));
      i++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(inFlight);
  agent.destroy();
  return total;
}

const _q = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

/**
 * Due time to 202 of a server other than Outpost under the same client, rate and connections: the
 * bare HTTP 202 (`bench/probes/bare_http.ts`, the latency floor: what the machine's scheduling and
 * the client alone add) and the minimal relay.
 */
export async function openLoopFloor(o: Pick<OpenLoopOptions, "url" | "body" | "contentType" | "rate" | "seconds" | "connections">): Promise<{ p50: number; p99: number; answered: number; sent: number }> {
  const lat: number[] = [];
  const sent = await _drive(o, (status, _body, at) => void (status === 202 && lat.push(performance.now() - at)));
  lat.sort((a, b) => a - b);
  return { p50: _q(lat, 0.5), p99: _q(lat, 0.99), answered: lat.length, sent };
}

/** Run the load and collect latencies. */
export async function openLoop(o: OpenLoopOptions): Promise<LatencyResult> {
  await o.jsm.consumers.update(o.stream, o.durable, { sample_freq: "100%" });
  const acks = new Map<number, number>();
  const sub = o.nc.subscribe(`$JS.EVENT.METRIC.CONSUMER.ACK.${o.stream}.${o.durable}`, {
    callback: (_e, m) => {
      const seq = (m.json() as { stream_seq?: number }).stream_seq;
      if (typeof seq === "number") acks.set(seq, performance.now());
    },
  });
  await o.nc.flush();
  const due = new Map<number, number>(); // stream seq → due time
  const accepted: number[] = []; // due → 202, ms
  let failed = 0;
  const total = await _drive(o, (status, body, at) => {
    const seq = status === 202 ? (JSON.parse(body) as { results?: { seq: number }[] }).results?.[0]?.seq : undefined;
    if (seq === undefined) failed++;
    else {
      due.set(seq, at);
      accepted.push(performance.now() - at);
    }
  });
  const until = performance.now() + 10_000;
  while (performance.now() < until && [...due.keys()].some((s) => !acks.has(s))) await new Promise((r) => setTimeout(r, 20));
  sub.unsubscribe();
  await o.jsm.consumers.update(o.stream, o.durable, { sample_freq: "" }).catch(() => {});
  const lat = [...due].flatMap(([seq, at]) => (acks.has(seq) ? [acks.get(seq)! - at] : [])).sort((a, b) => a - b);
  const q = (p: number, xs = lat) => _q(xs, p);
  accepted.sort((a, b) => a - b);
  return {
    ratePerSec: o.rate, sent: total, acked: lat.length, failed, p50: q(0.5), p99: q(0.99), p999: q(0.999), max: lat[lat.length - 1] ?? NaN,
    acceptedP50: q(0.5, accepted), acceptedP99: q(0.99, accepted), connections: o.connections,
  };
}
