/**
 * Several hosts on one NATS cluster: three nats-servers with clustered JetStream on loopback, two
 * Outpost hosts with `--nats a,b,c --replicas 3` and the same handlers share each handler's durable
 * consumer. A host killed with -9 mid-load loses nothing (what it held is redelivered to the
 * other); a nats-server node killed mid-load loses no acknowledged reading; dedupe and delayed
 * readings hold across hosts; a second host adds throughput where the handler is the bottleneck.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { bundles, makeBundle, makeKey, push, type TestKey } from "../_bundles.ts";
import { startCluster, type Cluster } from "../_cluster.ts";
import { ingest, join, sleep, startHost, streamMessages, waitFor, writeFile, type TestHost } from "../_harness.ts";

const WORKERS = {
  "cl.ts": `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "cl",
  schema: v.object({ n: v.number() }),
  concurrency: 8,
  timeoutMs: 2_000,
  async handle(r, ctx) { await ctx.publish("cl", { n: r.n }); },
});
`,
  "dd.ts": `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "dd",
  schema: v.object({ key: v.number(), from: v.string() }),
  concurrency: 8,
  dedupe: { key: "key", ttlMs: 3_600_000 },
  async handle(r, ctx) { await new Promise((res) => setTimeout(res, 20)); await ctx.publish("dd", { key: r.key, from: r.from }); },
});
`,
  "later.ts": `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "later",
  schema: v.object({ n: v.number(), due: v.number() }),
  async handle(r, ctx) { await ctx.publish("later", { n: r.n, due: r.due, at: Date.now() }); },
});
`,
  "slow.ts": `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "slow",
  schema: v.object({ n: v.number() }),
  concurrency: 2,
  async handle(r, ctx) { await new Promise((res) => setTimeout(res, 10)); await ctx.publish("slow", { n: r.n }); },
});
`,
};

async function post(host: TestHost, topic: string, n0: number, count: number): Promise<void> {
  for (let i = 0; i < count; i += 50) {
    const batch = Array.from({ length: Math.min(50, count - i) }, (_, k) => ({ n: n0 + i + k }));
    const r = await ingest(host.url, topic, JSON.stringify(batch), "application/json");
    assert.equal(r.status, 202, JSON.stringify(r.json));
  }
}

describe("several hosts on a three-node NATS cluster", () => {
  let cluster: Cluster;
  let a: TestHost;
  let b: TestHost;
  let key: TestKey;
  let args: string[];
  const outputs = async (subject: string) => (await streamMessages(cluster.jsm, "OUTBOX", `out.${subject}`)).map((m) => m.value);
  /** How many outputs a subject has (without reading them). */
  const countOf = async (subject: string) => (await cluster.jsm.streams.info("OUTBOX", { subjects_filter: `out.${subject}` })).state.subjects?.[`out.${subject}`] ?? 0;
  const acked = async (h: TestHost, name: string) => ((await (await h.api("/v1/handlers")).json()) as { handlers: { name: string; counts: { acked: number } }[] }).handlers.find((x) => x.name === name)!.counts.acked;
  before(async () => {
    key = await makeKey();
    args = ["--admin-token", "tok", "--replicas", "3", "--trust", key.pubFile];
    cluster = await startCluster();
    a = await startHost({ nats: cluster.urls, workers: WORKERS, args });
    b = await startHost({ nats: cluster.urls, workers: WORKERS, args });
  });
  after(async () => {
    await a?.stop().catch(() => {});
    await b?.stop().catch(() => {});
    await cluster?.stop();
  });

  test("the streams have three replicas; two hosts split one handler's work; a host killed with -9 mid-load loses nothing", async () => {
    for (const s of ["INGEST", "OUTBOX", "DLQ"]) assert.equal((await cluster.jsm.streams.info(s)).config.num_replicas, 3, s);
    const consumers = [];
    for await (const c of cluster.jsm.consumers.list("INGEST")) consumers.push(c.name);
    assert.ok(consumers.includes("outpost-cl"), `one durable consumer per handler, shared: ${consumers.join(", ")}`);
    await post(a, "cl", 0, 1_000);
    await post(b, "cl", 1_000, 1_000);
    await waitFor(async () => (await cluster.jsm.streams.info("OUTBOX")).state.messages >= 2_000 || undefined, 30_000, "2,000 handled");
    const [na, nb] = [await acked(a, "cl"), await acked(b, "cl")];
    console.log(`two hosts split 2,000 readings: ${na} and ${nb}`);
    assert.ok(na > 100 && nb > 100, `both hosts took a share (${na}, ${nb})`);
    // b dies with readings in flight; a takes the rest, and what b held comes back to a.
    const load = post(b, "cl", 2_000, 2_000).catch(() => {});
    await sleep(300);
    b.proc.kill("SIGKILL");
    await b.exited;
    await load;
    await post(a, "cl", 4_000, 1_000);
    await waitFor(async () => (await countOf("cl")) >= 3_000 || undefined, 40_000, "3,000 outputs");
    const seen = await waitFor(async () => {
      const ns = (await outputs("cl")).map((x) => x.n as number);
      const u = new Set(ns);
      // Every reading b answered 202 for before it died, and all of a's.
      const need = [...Array.from({ length: 2_000 }, (_, i) => i), ...Array.from({ length: 1_000 }, (_, i) => 4_000 + i)];
      return need.every((n) => u.has(n)) ? ns : undefined;
    }, 40_000, "every acknowledged reading handled after the kill");
    const dup = seen.length - new Set(seen).size;
    console.log(`after kill -9 of one host: ${new Set(seen).size} distinct readings handled, ${dup} handled twice (in flight on the dead host)`);
    assert.ok(dup <= 64, `at most what the dead host held was handled twice (${dup})`);
    b = await startHost({ nats: cluster.urls, workersDir: b.workersDir, dataDir: b.dataDir, args });
  });

  test("a nats-server node killed mid-load: no acknowledged reading is lost, ingest goes on through the others", async () => {
    const leader = (await cluster.jsm.streams.info("INGEST")).cluster?.leader;
    assert.ok(leader, "INGEST has a leader");
    const acks: number[] = [];
    const refused: number[] = [];
    const why = new Map<string, number>();
    let n = 10_000;
    const until = Date.now() + 25_000;
    let killedAt = 0;
    let afterKill = 0;
    let firstAfter = 0;
    while (Date.now() < until && afterKill < 200) {
      const h = n % 2 ? a : b;
      const r = await ingest(h.url, "cl", JSON.stringify({ n }), "application/json").catch((e) => ({ status: 0, json: String(e) }));
      (r.status === 202 ? acks : refused).push(n);
      if (r.status !== 202) why.set(`${r.status} ${JSON.stringify(r.json).slice(0, 160)}`, (why.get(`${r.status} ${JSON.stringify(r.json).slice(0, 160)}`) ?? 0) + 1);
      else if (killedAt && afterKill++ === 0) firstAfter = Date.now();
      n++;
      if (!killedAt && acks.length === 300) {
        await cluster.kill(cluster.index(leader));
        killedAt = Date.now();
      }
    }
    console.log(`INGEST leader ${leader} killed: ${acks.length} readings accepted, ${refused.length} refused while the cluster moved (${firstAfter - killedAt} ms from the kill to the next accepted reading): ${JSON.stringify([...why])}`);
    assert.ok(afterKill >= 200, `ingest resumed on the other nodes (${afterKill} accepted after the kill)`);
    const u = await waitFor(async () => {
      const s = new Set((await outputs("cl")).map((x) => x.n as number));
      return acks.every((x) => s.has(x)) ? s : undefined;
    }, 40_000, "every accepted reading handled");
    assert.ok(acks.every((x) => u.has(x)));
    await cluster.start(cluster.index(leader));
  });

  test("dedupe and delayed readings with two hosts: each key handled once, each delayed reading once and not early", async () => {
    // The same key posted to both hosts at once, 100 times over.
    await Promise.all(Array.from({ length: 100 }, (_, k) => Promise.all([
      ingest(a.url, "dd", JSON.stringify({ key: k, from: "a" }), "application/json"),
      ingest(b.url, "dd", JSON.stringify({ key: k, from: "b" }), "application/json"),
    ])));
    await waitFor(async () => (await countOf("dd")) >= 100 || undefined, 30_000, "100 keys handled");
    await sleep(3_000); // a second copy would be handled by now
    const keys = (await outputs("dd")).map((x) => x.key as number);
    assert.equal(new Set(keys).size, 100);
    assert.equal(keys.length, 100, `each key handled once (${keys.length} outputs for ${new Set(keys).size} keys)`);
    const due = Date.now() + 2_000;
    for (let i = 0; i < 40; i++) {
      const r = await ingest(i % 2 ? a.url : b.url, "later", JSON.stringify({ n: i, due }), "application/json", { "not-before": new Date(due).toISOString() });
      assert.equal(r.status, 202);
    }
    await waitFor(async () => (await countOf("later")) >= 40 || undefined, 30_000, "40 delayed readings handled");
    await sleep(1_000);
    const all = await outputs("later");
    assert.equal(all.length, 40, "each delayed reading handled once");
    assert.ok(all.every((x) => x.at >= x.due - 50), "none before its time");
  });

  test("a handler swap on one host while both take readings: nothing lost, the other host keeps handling", async () => {
    const before = { a: await acked(a, "cl"), b: await acked(b, "cl") };
    const load = (async () => {
      for (let i = 0; i < 20; i++) await post(i % 2 ? a : b, "cl", 20_000 + i * 50, 50);
    })();
    await sleep(200);
    await writeFile(join(a.workersDir, "cl.ts"), WORKERS["cl.ts"].replace("{ n: r.n }", "{ n: r.n, v: 2 }"));
    await load;
    await waitFor(async () => {
      const s = new Set((await outputs("cl")).map((x) => x.n as number));
      return Array.from({ length: 1_000 }, (_, i) => 20_000 + i).every((n) => s.has(n)) || undefined;
    }, 40_000, "every reading posted during the swap handled");
    await waitFor(async () => ((await (await a.api("/v1/handlers")).json()) as { handlers: { name: string; swaps: number }[] }).handlers.find((h) => h.name === "cl")!.swaps >= 1 || undefined, 20_000, "the swap on host a");
    assert.ok((await acked(b, "cl")) > before.b, "host b kept handling");
    assert.ok((await outputs("cl")).some((x) => x.v === 2), "host a handles with the new version");
  });

  test("a bundle activated on one host while both take readings: nothing lost, the other host keeps handling", async () => {
    const before = await acked(b, "cl");
    const bytes = await makeBundle({ release: 1, handlers: { ...WORKERS, "cl.ts": WORKERS["cl.ts"].replace("{ n: r.n }", "{ n: r.n, v: 3 }") }, keys: [key] });
    const load = (async () => {
      for (let i = 0; i < 20; i++) await post(i % 2 ? a : b, "cl", 30_000 + i * 50, 50);
    })();
    await sleep(200);
    const r = await push(a.url, bytes);
    assert.equal(r.status, 201, JSON.stringify(r.json));
    await load;
    await waitFor(async () => {
      const s = new Set((await outputs("cl")).map((x) => x.n as number));
      return Array.from({ length: 1_000 }, (_, i) => 30_000 + i).every((n) => s.has(n)) || undefined;
    }, 40_000, "every reading posted during the activation handled");
    assert.equal((await bundles(a.url)).active.release, 1);
    assert.ok((await acked(b, "cl")) > before, "host b kept handling");
    await post(a, "cl", 31_000, 200);
    await waitFor(async () => (await outputs("cl")).some((x) => x.v === 3) || undefined, 20_000, "host a handling with the release");
  });

  test("a second host adds throughput where the handler is the bottleneck", async () => {
    const drain = async (n0: number, hosts: TestHost[]) => {
      const before = await countOf("slow");
      const t0 = Date.now();
      await post(hosts[0]!, "slow", n0, 400);
      await waitFor(async () => (await countOf("slow")) >= before + 400 || undefined, 60_000, "400 slow readings");
      return 400 / ((Date.now() - t0) / 1000);
    };
    const two = await drain(0, [a, b]);
    assert.equal(await b.stop(), 0);
    const one = await drain(1_000, [a]);
    console.log(`slow handler (10 ms, concurrency 2): one host ${one.toFixed(0)} readings/s, two hosts ${two.toFixed(0)} readings/s (${(two / one).toFixed(2)}×)`);
    assert.ok(two > one * 1.3, `two hosts handle more than one (${two.toFixed(0)} vs ${one.toFixed(0)} per s)`);
  });
});
