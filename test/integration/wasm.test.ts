import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { decodeCbor, encodeCbor } from "../../src/codec/cbor.ts";
import { wasmMemoryDecl } from "../../src/sandbox/raw_wasm/abi.ts";
import { ingest, RUNTIMES, startHost, startNats, streamMessages, tempDir, waitFor, writeFile, join, type TestHost, type TestNats } from "../_harness.ts";

// A wasm-tier handler with state: a running count per sandbox, values echoed back exactly.
const COUNTER = `
import { defineHandler, v } from "outpost/handler";
let count = 0;
export default defineHandler({
  topic: "w.count",
  isolation: "wasm",
  schema: v.looseObject({ op: v.picklist(["add", "spin"]) }),
  cpuMs: 100,
  retry: { maxAttempts: 1 },
  async handle(r, ctx) {
    if (r.op === "spin") for (;;) {}
    count++;
    ctx.log("count", count);
    await ctx.publish("count", { count, bytes: r.bytes, big: r.big, at: r.at, sig: ctx.signal.aborted, enc: new TextDecoder().decode(new TextEncoder().encode("µ°")) });
  },
});
`;
const LOOP = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "w.loop", isolation: "wasm", cpuMs: 100, retry: { maxAttempts: 2, backoff: [50] },
  handle() { for (;;) { try { (async () => { for (;;) {} })(); } catch {} } },
});
`;
const BOMB = `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "w.bomb", isolation: "wasm", memoryMb: 8, cpuMs: 5000, retry: { maxAttempts: 2, backoff: [50] },
  handle() { const keep = []; for (let i = 0; i < 1e7; i++) keep.push(new Array(1000).fill(i)); },
});
`;
const RECURSE = `
import { defineHandler } from "outpost/handler";
const down = (n) => down(n + 1) + 1;
export default defineHandler({
  topic: "w.rec", isolation: "wasm", stackKb: 64, retry: { maxAttempts: 2, backoff: [50] },
  handle() { down(0); },
});
`;
const REACH = `
import { defineHandler } from "outpost/handler";
const attempts = {
  fetch: () => fetch("http://127.0.0.1:1/"),
  process: () => process.env.PATH,
  Deno: () => Deno.readTextFileSync("/etc/passwd"),
  Bun: () => Bun.file("/etc/passwd").text(),
  require: () => eval("require")("node:fs"),
  import: () => import("node:" + "fs"),
  constructor: () => globalThis.constructor.constructor("return process")().exit(1),
  setTimeout: () => setTimeout(() => {}, 1),
};
export default defineHandler({
  topic: "w.reach", isolation: "wasm", retry: { maxAttempts: 2, backoff: [50] },
  async handle(r) { await attempts[r.what](); },
});
`;
const PLAIN = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "w.plain",
  schema: v.object({ n: v.number() }),
  async handle(r, ctx) { await ctx.publish("plain", { n: r.n, worker: typeof process !== "undefined" || typeof Deno !== "undefined" }); },
});
`;
const REACH_KINDS = ["fetch", "process", "Deno", "Bun", "require", "import", "constructor", "setTimeout"];

/** A raw handler: echoes each reading as `{publish: "raw", value: {count, value}}`; a CBOR null fails it. */
const RAW_WAT = `
(module
  (memory (export "memory") 1 2)
  (global $count (mut i32) (i32.const 0))
  ;; [{"publish": "raw", "value": {"count": <n>, "value": <reading>}}]
  (data (i32.const 0) "\\81\\a2\\67publish\\63raw\\65value\\a2\\65count\\18")
  ;; byte 27: count; 28..33: "value" key; reading copied from 34
  (data (i32.const 28) "\\65value")
  (data (i32.const 256) "\\81\\a1\\65error\\6cnull reading")
  (func (export "alloc") (param $len i32) (result i32) (i32.const 4096))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32)
    (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 0xf6))
      (then (return (i64.or (i64.shl (i64.const 256) (i64.const 32)) (i64.const 21)))))
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store8 (i32.const 27) (global.get $count))
    (block $done (loop $copy
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (i32.store8 (i32.add (i32.const 34) (local.get $i)) (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $copy)))
    (i64.extend_i32_u (i32.add (i32.const 34) (local.get $len)))))
`;
const RAW_LOOP_WAT = `
(module
  (memory (export "memory") 1 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "handle") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))
`;

async function wat2wasm(text: string): Promise<Uint8Array> {
  const wabt = await (await import("wabt")).default();
  const mod = wabt.parseWat("handler.wat", text);
  try {
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/** Resident set size of a process in bytes (Linux). */
async function rss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

describe("the wasm tier's raw modules", () => {
  test("raw modules: the declared memory is read from the binary", async () => {
    assert.deepEqual(wasmMemoryDecl(await wat2wasm(RAW_WAT)), { imported: false, min: 1, max: 2 });
    assert.deepEqual(wasmMemoryDecl(await wat2wasm(`(module (import "env" "memory" (memory 3)))`)), { imported: true, min: 3, max: undefined });
    assert.equal(wasmMemoryDecl(await wat2wasm("(module)")), undefined);
  });
});

for (const runtime of RUNTIMES) {
  describe(`wasm isolation tier on ${runtime}`, () => {
    let nats: TestNats;
    let host: TestHost;
    before(async () => {
      nats = await startNats();
      const workersDir = await tempDir("outpost-workers-");
      await writeFile(join(workersDir, "raw.wasm"), await wat2wasm(RAW_WAT));
      await writeFile(join(workersDir, "raw.json"), JSON.stringify({ topic: "w.raw", retry: { maxAttempts: 1 } }));
      await writeFile(join(workersDir, "rawloop.wasm"), await wat2wasm(RAW_LOOP_WAT));
      await writeFile(join(workersDir, "rawloop.json"), JSON.stringify({ topic: "w.rawloop", timeoutMs: 300, retry: { maxAttempts: 2, backoff: [50] } }));
      host = await startHost({
        runtime,
        nats: nats.url,
        workersDir,
        workers: { "counter.ts": COUNTER, "loop.ts": LOOP, "bomb.ts": BOMB, "rec.ts": RECURSE, "reach.ts": REACH, "plain.ts": PLAIN },
      });
    });
    after(async () => {
      await host?.stop();
      await nats?.stop();
    });

    const dlq = async (name: string, n = 1) =>
      await waitFor(async () => {
        const m = (await streamMessages(nats.jsm, "DLQ", `dlq.${name}`)).filter((x) => x.subject === `dlq.${name}`);
        return m.length >= n ? m.map((x) => x.value) : undefined;
      }, 30_000, `${n} DLQ entries of ${name}`);

    test("handlers load in their tier; the wasm tier reports its limits as enforced and sandboxed", async () => {
      const { handlers } = await (await host.api("/v1/handlers")).json();
      const by = Object.fromEntries(handlers.map((h: { name: string }) => [h.name, h]));
      for (const n of ["counter", "loop", "bomb", "rec", "reach", "raw", "rawloop"]) {
        assert.equal(by[n].status, "running", `${n}: ${by[n].lastError ?? by[n].loadError?.message}`);
        assert.equal(by[n].isolation, "wasm", n);
        assert.equal(by[n].sandboxed, true, n);
        assert.equal(by[n].limits.memoryEnforced, true, n);
      }
      assert.equal(by.counter.limits.memoryMb, 16);
      assert.equal(by.bomb.limits.memoryMb, 8);
      assert.equal(by.plain.isolation, "worker");
      assert.equal(by.plain.status, "running");
      // Built by the single file (Node) or from source (Deno, Bun): each wasm-tier guest also as its part, and the prelude.
      const built = await readdir(join(host.dataDir, "build"), { recursive: true });
      for (const n of ["counter", "loop", "bomb"]) assert.ok(built.some((f) => f.startsWith(`${n}-`) && f.endsWith(".guest-part.mjs")), `${n}'s guest part in ${built.join(", ")}`);
      assert.ok(built.some((f) => /^(sdk-[0-9a-f]{12}\/prelude|prelude-[0-9a-f]{12})\.mjs$/.test(f)), `the prelude in ${built.join(", ")}`);
      // A handler whose own files never say "wasm" starts in a worker without being evaluated in QuickJS first.
      const kept = await Promise.all(built.filter((f) => /^cache\/[0-9a-f]+\.json$/.test(f)).map(async (f) => JSON.parse(await readFile(join(host.dataDir, "build", f), "utf8"))));
      const mentions = Object.fromEntries(kept.map((e: { file: string; built: { mentionsWasm?: boolean } }) => [e.file.split("/").pop(), e.built.mentionsWasm]));
      assert.equal(mentions["plain.ts"], false, JSON.stringify(mentions));
      assert.equal(mentions["counter.ts"], true, JSON.stringify(mentions));
    });

    test("values survive exactly, state is kept between messages and discarded on restart; ingest validates in QuickJS", async () => {
      const reading = { op: "add", bytes: new Uint8Array([0, 1, 2, 255]), big: 2n ** 70n, at: new Date(1_700_000_000_123) };
      for (let i = 0; i < 3; i++) assert.equal((await ingest(host.url, "w.count", encodeCbor(reading), "application/cbor")).status, 202);
      const bad = await ingest(host.url, "w.count", JSON.stringify({ op: "nope" }), "application/json");
      assert.equal(bad.status, 400);
      assert.match(bad.json.message, /^Reading 0, field op: Invalid type: Expected \("add" \| "spin"\)/);
      const out = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.count");
        return m.length >= 3 ? m.map((x) => x.value) : undefined;
      }, 20_000, "3 counts");
      assert.deepEqual(out.map((v) => v.count), [1, 2, 3]);
      assert.deepEqual(out[0].bytes, reading.bytes);
      assert.equal(out[0].big, reading.big);
      assert.deepEqual(out[0].at, reading.at);
      assert.equal(out[0].sig, false);
      assert.equal(out[0].enc, "µ°");
      // Spinning uses up the CPU budget: the message is dead-lettered, the sandbox rebuilt, the count starts over.
      assert.equal((await ingest(host.url, "w.count", JSON.stringify({ op: "spin" }), "application/json")).status, 202);
      const [dl] = await dlq("counter");
      assert.equal(dl.error.name, "HandlerTimeoutError");
      assert.match(dl.error.message, /used up its CPU budget of 100 ms/);
      assert.equal((await ingest(host.url, "w.count", JSON.stringify({ op: "add" }), "application/json")).status, 202);
      const after = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.count");
        return m.length >= 4 ? m.map((x) => x.value) : undefined;
      }, 20_000, "a 4th count");
      assert.equal(after[3].count, 1, "a rebuilt sandbox starts from a fresh module state");
    });

    test("hostile handlers are stopped, retried, dead-lettered with the reason; the host's RSS stays bounded; the others keep working", async (t) => {
      const rssBefore = await rss(host.proc.pid!);
      const post = async (topic: string, body: unknown) =>
        assert.equal((await ingest(host.url, topic, JSON.stringify(body), "application/json")).status, 202, topic);
      await post("w.loop", {});
      await post("w.bomb", {});
      await post("w.rec", {});
      for (const what of REACH_KINDS) await post("w.reach", { what });
      await post("w.rawloop", {});
      let peak = rssBefore;
      const sample = setInterval(() => void rss(host.proc.pid!).then((r) => (peak = Math.max(peak, r)), () => {}), 50);
      try {
        const [loop] = await dlq("loop");
        assert.equal(loop.attempts, 2);
        assert.equal(loop.error.name, "HandlerTimeoutError");
        assert.match(loop.error.message, /CPU budget of 100 ms \(interrupted\)/);
        const [bomb] = await dlq("bomb");
        assert.equal(bomb.attempts, 2);
        assert.equal(bomb.error.name, "IsolateCrashedError");
        assert.match(bomb.error.message, /out of memory \(memoryMb 8\)/);
        const [rec] = await dlq("rec");
        assert.equal(rec.attempts, 2);
        assert.deepEqual([rec.error.name, rec.error.message], ["InternalError", "stack overflow"]);
        const reach = await dlq("reach", REACH_KINDS.length);
        const byWhat = new Map(reach.map((d) => [(decodeCbor(d.payload) as { what: string }).what, d]));
        for (const what of REACH_KINDS) {
          const d = byWhat.get(what)!;
          assert.equal(d.attempts, 2, what);
          const expected = what === "import" ? "could not load module 'node:fs'"
            : what === "constructor" ? "'process' is not defined"
            : `'${what === "require" ? "require" : what}' is not defined`;
          assert.deepEqual([d.error.name, d.error.message], ["ReferenceError", expected], what);
        }
        const [rawloop] = await dlq("rawloop");
        assert.equal(rawloop.attempts, 2);
        assert.equal(rawloop.error.name, "HandlerTimeoutError");
      } finally {
        clearInterval(sample);
      }
      const rssAfter = await rss(host.proc.pid!);
      t.diagnostic(`host RSS on ${runtime}: before ${(rssBefore / 1048576).toFixed(1)} MiB, peak ${(peak / 1048576).toFixed(1)} MiB, after ${(rssAfter / 1048576).toFixed(1)} MiB`);
      assert.ok(peak - rssBefore < 96 * 1048576, `peak RSS grew by ${((peak - rssBefore) / 1048576).toFixed(1)} MiB`);
      // The others keep working, in both tiers.
      await post("w.plain", { n: 7 });
      await post("w.count", { op: "add" });
      await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.plain")).find((m) => m.value.n === 7 && m.value.worker), 20_000, "the worker-tier handler's output");
      await waitFor(async () => (await streamMessages(nats.jsm, "OUTBOX", "out.count")).length >= 5, 20_000, "the counter's output");
      const { handlers } = await (await host.api("/v1/handlers")).json();
      const by = Object.fromEntries(handlers.map((h: { name: string }) => [h.name, h]));
      assert.ok(by.loop.counts.crashes >= 2 && by.bomb.counts.crashes >= 2, "the trapped sandboxes were rebuilt");
      await waitFor(async () => {
        const { handlers: hs } = await (await host.api("/v1/handlers")).json();
        return hs.every((h: { status: string }) => h.status === "running" || h.status === "crashing");
      }, 10_000, "every handler back up");
    });

    test("a raw .wasm handler processes CBOR readings end to end, keeps its state, and reports its errors", async () => {
      const reading = { sensor: "s1", celsius: 21.5, raw: new Uint8Array([9, 8, 7]) };
      assert.equal((await ingest(host.url, "w.raw", encodeCbor(reading), "application/cbor")).status, 202);
      assert.equal((await ingest(host.url, "w.raw", encodeCbor({ n: 2 }), "application/cbor")).status, 202);
      const out = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", "out.raw");
        return m.length >= 2 ? m.map((x) => x.value) : undefined;
      }, 20_000, "2 raw outputs");
      assert.deepEqual(out[0], { count: 1, value: reading });
      assert.deepEqual(out[1], { count: 2, value: { n: 2 } });
      assert.equal((await ingest(host.url, "w.raw", new Uint8Array([0xf6]), "application/cbor")).status, 202);
      const [dl] = await dlq("raw");
      assert.deepEqual([dl.error.name, dl.error.message, dl.attempts], ["Error", "null reading", 1]);
    });

    test("changing only a raw handler's manifest reloads it", async () => {
      const view = async () => ((await (await host.api("/v1/handlers")).json()).handlers as { name: string; topic: string | null; swaps: number }[]).find((h) => h.name === "raw")!;
      const before = await view();
      await writeFile(join(host.workersDir, "raw.json"), JSON.stringify({ topic: "w.raw2", retry: { maxAttempts: 1 } }));
      const after = await waitFor(async () => {
        const h = await view();
        return h.swaps === before.swaps + 1 ? h : undefined;
      }, 10_000, "the manifest change to swap the handler");
      assert.equal(after.topic, "w.raw2");
      assert.equal((await ingest(host.url, "w.raw2", encodeCbor({ n: 3 }), "application/cbor")).status, 202);
    });
  });
}

test("ctx.topic and ctx.subject are the same in both tiers, a high-priority reading's included", async () => {
  const nats = await startNats();
  const handler = (tier: string) => `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "lanes.${tier}", isolation: "${tier}", priority: true,
  async handle(r, ctx) { await ctx.publish("seen.${tier}", { topic: ctx.topic, subject: ctx.subject, id: ctx.id.startsWith("INGEST:") }); },
});
`;
  const host = await startHost({ nats: nats.url, workers: { "w.ts": handler("worker"), "q.ts": handler("wasm") } });
  try {
    for (const tier of ["worker", "wasm"]) {
      assert.equal((await ingest(host.url, `lanes.${tier}`, "{}", "application/json")).status, 202);
      assert.equal((await ingest(host.url, `lanes.${tier}`, "{}", "application/json", { "outpost-priority": "high" })).status, 202);
      const seen = await waitFor(async () => {
        const m = await streamMessages(nats.jsm, "OUTBOX", `out.seen.${tier}`);
        return m.length === 2 ? m : undefined;
      }, 10_000, `${tier} outputs`);
      assert.deepEqual(seen.map((m) => m.value).sort((a, b) => a.subject.length - b.subject.length), [
        { topic: `lanes.${tier}`, subject: `ingest.lanes.${tier}`, id: true },
        { topic: `lanes.${tier}`, subject: `ingest.~hi.lanes.${tier}`, id: true },
      ]);
    }
  } finally {
    await host.stop();
    await nats.stop();
  }
});
