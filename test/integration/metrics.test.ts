/**
 * GET /metrics on Node, Deno and Bun: Prometheus text that `promtool check metrics` accepts, with
 * the counters and gauges moving as readings are handled and dead-lettered; and on Node a real
 * Prometheus server (Debian's package) scraping the host with the read-only token, queried over
 * its HTTP API.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { freePort, ingest, join, ROOT, RUNTIMES, sleep, startHost, startNats, tempDir, waitFor, type TestHost } from "../_harness.ts";

const H = `import { defineHandler, v } from "outpost/handler";
export default defineHandler({ topic: "meter", schema: v.object({ n: v.number() }), retry: { maxAttempts: 1 }, async handle(r, ctx) { if (r.n < 0) throw new Error("negative"); await ctx.publish("meter", r); } });
`;

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function post(host: TestHost): Promise<void> {
  for (const n of [1, 2, 3, -1]) assert.equal((await ingest(host.url, "meter", JSON.stringify({ n }), "application/json")).status, 202);
  assert.equal((await ingest(host.url, "meter", JSON.stringify({ n: "x" }), "application/json")).status, 400);
}

for (const runtime of RUNTIMES) {
  test(`on ${runtime}, /metrics passes promtool and counts ingest, outcomes, streams and consumers`, async () => {
    const nats = await startNats();
    const host = await startHost({ runtime, nats: nats.url, workers: { "meter.ts": H } });
    try {
      await post(host);
      const text = await waitFor(async () => {
        const t = await (await host.api("/metrics")).text();
        return sample(t, "outpost_stream_messages", { stream: "DLQ" }) === 1 && sample(t, "outpost_handler_messages_total", { handler: "meter", outcome: "acked" }) === 3 ? t : undefined;
      }, 20_000, "the metrics to move");
      const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
      assert.equal(sample(text, "outpost_ingest_requests_total", { topic: "meter", status: "202" }), 4);
      assert.equal(sample(text, "outpost_ingest_requests_total", { topic: "meter", status: "400" }), 1);
      assert.equal(sample(text, "outpost_readings_stored_total", { topic: "meter" }), 4);
      assert.equal(sample(text, "outpost_handler_messages_total", { handler: "meter", outcome: "dead_lettered" }), 1);
      assert.equal(sample(text, "outpost_handler_duration_seconds_count", { handler: "meter" }), 4);
      assert.equal(sample(text, "outpost_handler_status", { handler: "meter", status: "running" }), 1);
      assert.equal(sample(text, "outpost_consumer_num_pending", { consumer: "outpost-meter" }), 0);
      assert.equal(sample(text, "outpost_stream_max_bytes", { stream: "INGEST" }) !== undefined, true);
      assert.equal(sample(text, "outpost_build_info", { runtime }), 1);
      assert.equal(sample(text, "outpost_broker_up"), 1);
      assert.doesNotMatch(text, /sensor=|seq=/, "no high-cardinality labels");
    } finally {
      await host.stop();
      await nats.stop();
    }
  });
}

test("a real Prometheus scrapes the host with the read-only token and answers queries on its counters and the backlog", async () => {
  const nats = await startNats();
  const dir = await tempDir("outpost-prom-");
  await writeFile(join(dir, "read.token"), "scrape-token-1\n");
  const host = await startHost({ nats: nats.url, workers: { "meter.ts": H }, args: ["--read-token-file", join(dir, "read.token")] });
  const port = await freePort();
  await writeFile(join(dir, "prometheus.yml"), `global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: outpost
    authorization:
      credentials_file: ${join(dir, "read.token")}
    static_configs:
      - targets: ["127.0.0.1:${new URL(host.url).port}"]
`);
  const prom = spawn("prometheus", [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
  let promLog = "";
  prom.stderr!.on("data", (d) => (promLog += d));
  const query = async (q: string): Promise<number | undefined> => {
    const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => undefined);
    if (!r?.ok) return undefined;
    const j = await r.json() as { data: { result: { value: [number, string] }[] } };
    return j.data.result.length ? Number(j.data.result[0]!.value[1]) : undefined;
  };
  try {
    await post(host);
    const acked = await waitFor(async () => ((await query('outpost_handler_messages_total{handler="meter",outcome="acked"}')) === 3 ? 3 : undefined), 60_000, `Prometheus to see 3 acks\n${promLog.slice(-2000)}`);
    assert.equal(acked, 3);
    assert.equal(await waitFor(() => query('outpost_handler_messages_total{outcome="dead_lettered"}'), 20_000, "the dead letter"), 1);
    assert.equal(await waitFor(() => query('outpost_stream_messages{stream="DLQ"}'), 20_000, "the DLQ gauge"), 1);
    assert.equal(await query('outpost_consumer_num_pending{consumer="outpost-meter"}'), 0, "the backlog");
    assert.equal(await query('up{job="outpost"}'), 1, "scraped with the read-only token");
    // Every query of the Grafana dashboard in docs/ is valid PromQL that this Prometheus answers.
    const dash = JSON.parse(await readFile(join(ROOT, "docs/grafana-dashboard.json"), "utf8")) as { panels: { title: string; targets: { expr: string }[] }[] };
    for (const p of dash.panels) {
      for (const t of p.targets) {
        const q = t.expr.replace(/\$instance/g, ".*");
        const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
        const j = await r.json() as { status: string; error?: string; data?: { result: unknown[] } };
        assert.equal(j.status, "success", `${p.title}: ${q}: ${j.error}`);
      }
    }
    // Storage headroom is one division.
    const headroom = await query('1 - outpost_stream_bytes{stream="INGEST"} / outpost_stream_max_bytes{stream="INGEST"}');
    assert.ok(headroom !== undefined && headroom > 0.99 && headroom <= 1, String(headroom));
  } finally {
    prom.kill("SIGTERM");
    await Promise.race([new Promise((r) => prom.once("exit", r)), sleep(5_000)]);
    await host.stop();
    await nats.stop();
  }
});
