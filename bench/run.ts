/**
 * `npm run bench`: every figure next to a ceiling measured in the same run on the same machine.
 * Writes `<out>/<timestamp>-<runtime>.json` and `.svg`, prints a table per runtime.
 */
import { ensureNodeRed, startNodeRed } from "./lib/nodered.ts";
import { reading } from "./lib/payload.ts";
import { runWrk } from "./lib/wrk.ts";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "./lib/args.ts";
import { SINK_CONCURRENCY } from "./lib/handlers.ts";
import { describeMachine } from "./lib/machine.ts";
import { Procs, ROOT, rssBytes, runProbe, startRedis } from "./lib/procs.ts";
import { compare, table } from "./lib/report.ts";
import { runSuite, type Plan, type RuntimeResult } from "./lib/suite.ts";
import { chartSvg } from "./lib/svg.ts";
import { checkTargets, type BullmqResult, type TargetCheck } from "./lib/targets.ts";

const args = parseArgs(process.argv.slice(2));
const say = (s: string) => console.error(`[bench] ${s}`);
const plan: Plan = args.quick
  ? { seconds: 1, latencySeconds: 1, idleSettleMs: 300, coldRuns: 1, seqMessages: 200, parMessages: 2_000, connections: args.connections, batch: 100 }
  : { seconds: 8, latencySeconds: 10, idleSettleMs: 3_000, coldRuns: 5, seqMessages: 5_000, parMessages: 50_000, connections: args.connections, batch: 100 };
const started = new Date();
const procs = new Procs();
const stop = () => void procs.stopAll().finally(() => process.exit(130));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);

let bullmq: BullmqResult | undefined;
const runs: { r: RuntimeResult; targets: TargetCheck[] }[] = [];
try {
  const machine = describeMachine();
  say(`peer: BullMQ on redis-server (${machine.redisServer})`);
  const redis = await startRedis(procs);
  const peer = await runProbe<Omit<BullmqResult, "redisRssMb">>(procs, "node", "bullmq.ts",
    { port: redis.port, seconds: Math.min(plan.seconds, 6), producers: plan.connections, concurrency: SINK_CONCURRENCY }, 300_000);
  say("peer: Hono + valibot + BullMQ, the same job over HTTP (Node)");
  const pipeline = await runProbe<NonNullable<BullmqResult["pipeline"]>>(procs, "node", "bullmq_pipeline.ts",
    { port: redis.port, seconds: plan.seconds, connections: plan.connections, concurrency: SINK_CONCURRENCY, dir: await procs.tempDir("pipeline") }, 300_000);
  bullmq = { ...peer, pipeline, redisRssMb: (await rssBytes(redis.pid)) / 1024 / 1024 };
  await procs.stopAll();
  if (!args.quick) {
    // Node-RED: the same check over HTTP, the same load generator, the JSON form of the reading.
    const nr = await ensureNodeRed(say);
    if ("red" in nr) {
      try {
        say(`peer: Node-RED ${nr.version}, http in → function → http response (Node)`);
        const { url } = await startNodeRed(procs, nr.red);
        const dir = await procs.tempDir("wrk-nodered");
        const body = new TextEncoder().encode(JSON.stringify(reading(1)));
        await runWrk({ url: `${url}/v1/ingest/park`, body, contentType: "application/json", seconds: 2, connections: plan.connections, dir }); // warm-up
        const w = await runWrk({ url: `${url}/v1/ingest/park`, body, contentType: "application/json", seconds: plan.seconds, connections: plan.connections, dir });
        bullmq.nodeRed = { version: nr.version, perSec: w.requestsPerSec, p99Ms: w.latencyMs.p99, non2xx: w.non2xx, connections: w.connections };
      } catch (e) {
        bullmq.nodeRed = { error: `Node-RED did not run: ${(e as Error).message}` };
      }
    } else bullmq.nodeRed = nr;
    await procs.stopAll();
  }
  for (const rt of args.runtimes) {
    const r = await runSuite(rt, plan, procs, say);
    runs.push({ r, targets: checkTargets(r, bullmq) });
  }
  const out = resolve(ROOT, args.out);
  await mkdir(out, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  const name = `${stamp}-${args.runtimes.length > 1 ? "all" : args.runtimes[0]}`;
  const result = {
    version: 1,
    startedAt: started.toISOString(),
    durationSec: (Date.now() - started.getTime()) / 1_000,
    quick: args.quick,
    plan,
    machine,
    bullmq,
    runtimes: Object.fromEntries(runs.map(({ r, targets }) => [r.runtime, { ...r, targets }])),
  };
  const jsonFile = join(out, `${name}.json`);
  const svgFile = join(out, `${name}.svg`);
  await writeFile(jsonFile, JSON.stringify(result, null, 2) + "\n");
  await writeFile(svgFile, chartSvg(runs, bullmq, `Outpost benchmarks ${args.quick ? "(quick smoke run) " : ""}— ${machine.nproc} × ${machine.cpuModel}, ${started.toISOString().slice(0, 16)}Z`));
  for (const { r, targets } of runs) console.log(`\n${table(r, bullmq, targets)}\n`);
  if (args.compare) {
    console.log(`\nCompared with ${args.compare}:\n${compare(JSON.parse(await readFile(resolve(ROOT, args.compare), "utf8")), result)}\n`);
  }
  console.log(`wrote ${jsonFile}\nwrote ${svgFile}\n(${result.durationSec.toFixed(0)} s)`);
} catch (e) {
  console.error(`[bench] failed: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
} finally {
  await procs.stopAll();
}
