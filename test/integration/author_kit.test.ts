/**
 * The handler author's kit, as an author meets it outside this repository: `outpost new` in an
 * empty directory (its own test passes under node:test, deno test and bun test, and it
 * type-checks), `outpost test` on good, throwing and schema-failing readings in both tiers, and
 * the package's publishing dry runs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { encodeCbor } from "../../src/codec/cbor.ts";
import { join, outpost, ROOT, tempDir } from "../_harness.ts";

/** Run a command to its end (bounded): exit code and output. */
async function run(cmd: string, args: string[], cwd: string, timeoutMs = 120_000): Promise<{ code: number | null; out: string }> {
  // Not NODE_TEST_CONTEXT: the author's own node --test must run as a top-level runner.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const p = spawn(cmd, args, { cwd, env: { ...env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" } });
  let out = "";
  p.stdout.on("data", (d) => (out += d));
  p.stderr.on("data", (d) => (out += d));
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((r) => p.once("exit", r));
  clearTimeout(timer);
  return { code, out };
}

const BIN = (name: string) => join(ROOT, "node_modules/.bin", name);

for (const wasm of [false, true]) {
  test(`outpost new${wasm ? " --wasm" : ""} in an empty directory: its test passes on node:test, deno test and bun test, and it type-checks`, async () => {
    const dir = await tempDir("outpost-new-");
    await writeFile(join(dir, "sample.json"), JSON.stringify({ sensor: "t-1", celsius: 21.5, tags: ["lab"], ok: true, "odd key": null }));
    const made = await outpost(["new", "room-temp", "--topic", "rooms.temp", "--schema-from", "sample.json", ...(wasm ? ["--wasm"] : [])], 30_000, dir);
    assert.equal(made.code, 0, made.out);
    assert.match(made.out, /wrote room-temp\.ts, room-temp\.test\.ts, package\.json, tsconfig\.json/);
    const src = await readFile(join(dir, "room-temp.ts"), "utf8");
    assert.match(src, /celsius: v\.number\(\),\n  tags: v\.array\(v\.string\(\)\),\n  ok: v\.boolean\(\),\n  "odd key": v\.nullish\(v\.unknown\(\)\),/);
    assert.equal(src.includes(`isolation: "wasm"`), wasm);
    assert.equal(await readFile(join(dir, "tsconfig.json"), "utf8"), `{ "extends": "outpost/tsconfig.handler.json" }\n`);

    const node = await run(process.execPath, ["--import", "outpost/register", "--test", "room-temp.test.ts"], dir);
    assert.equal(node.code, 0, node.out);
    assert.match(node.out, /# pass 3\n# fail 0/);
    const deno = await run(BIN("deno"), ["test", "room-temp.test.ts"], dir);
    assert.equal(deno.code, 0, deno.out);
    assert.match(deno.out, /3 passed \| 0 failed/);
    const bun = await run(BIN("bun"), ["test", "./room-temp.test.ts"], dir);
    assert.equal(bun.code, 0, bun.out);
    assert.match(bun.out, / 3 pass\n 0 fail/);
    const tsc = await run(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "."], dir);
    assert.equal(tsc.code, 0, tsc.out);
    // A type error in the handler is caught by the same one-line config.
    await writeFile(join(dir, "room-temp.ts"), src.replace("ctx.log(", "ctx.logg("));
    const bad = await run(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "."], dir);
    assert.notEqual(bad.code, 0, bad.out);
    assert.match(bad.out, /room-temp\.ts\(\d+,\d+\): error TS2551: Property 'logg' does not exist on type 'Context'/);
    await writeFile(join(dir, "room-temp.ts"), src);

    // The generated handler, in the tier it asked for, on its sample.
    const tried = await outpost(["test", "room-temp.ts", "--reading", "sample.json"], 30_000, dir);
    assert.equal(tried.code, 0, tried.out);
    assert.match(tried.out, new RegExp(`^room-temp: ${wasm ? "wasm" : "worker"} tier, 5 attempts`));
    assert.match(tried.out, /publish out\.room-temp \{"topic":"rooms\.temp","at":"[^"]+","reading":\{"sensor":"t-1"/);
  });
}

const KIT = (tier: string) => `import { defineHandler, v } from "outpost/handler";

export default defineHandler({
  topic: "kit",
  isolation: "${tier}",
  schema: v.object({ n: v.number() }),
  retry: { maxAttempts: 3, backoff: [250, 1000] },
  async handle(r, ctx) {
    ctx.log("got", r.n);
    if (r.n === 13) throw new Error("unlucky " + r.n);
    if (r.n < 0) throw new ctx.Permanent("negative");
    await ctx.publish("kit.out", { twice: r.n * 2 });
    await ctx.emit("kit.next", { n: r.n + 1 }, { delayMs: 100 });
  },
});
`;

for (const tier of ["worker", "wasm"]) {
  test(`outpost test in the ${tier} tier: outputs, logs, schema failures, retries with their delay, dead letters, exit codes`, async () => {
    const dir = await tempDir("outpost-kit-");
    await writeFile(join(dir, "kit.ts"), KIT(tier));
    await writeFile(join(dir, "good.json"), JSON.stringify({ n: 4 }));
    await writeFile(join(dir, "many.cborseq"), Buffer.concat([encodeCbor({ n: 1 }), encodeCbor({ n: 2 })]));
    await writeFile(join(dir, "one.cbor"), encodeCbor({ n: 5 }));
    await writeFile(join(dir, "bad.json"), JSON.stringify({ n: "four" }));
    await writeFile(join(dir, "unlucky.json"), JSON.stringify({ n: 13 }));
    await writeFile(join(dir, "negative.json"), JSON.stringify({ n: -1 }));

    const good = await outpost(["test", "kit.ts", "-r", "good.json", "-r", "many.cborseq", "-r", "one.cbor"], 30_000, dir);
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, new RegExp(`^kit: ${tier} tier, 3 attempts, backoff 250, 1000 ms, timeout 30000 ms, on ingest\\.kit\\n`));
    assert.match(good.out, /reading good\.json: schema ok\n  publish out\.kit\.out \{"twice":8\}\n  emit ingest\.kit\.next \{"n":5\} \(after 100 ms\)\n  log info  got 4\n  → ack\n/);
    assert.match(good.out, /reading many\.cborseq#1: schema ok\n  publish out\.kit\.out \{"twice":4\}/);
    assert.match(good.out, /reading one\.cbor: schema ok\n  publish out\.kit\.out \{"twice":10\}/);
    assert.match(good.out, /4 of 4 readings ended as expected \(ack\)\n$/);

    const bad = await outpost(["test", "kit.ts", "-r", "bad.json"], 30_000, dir);
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /reading bad\.json: schema failed\n  schema: n: Invalid type: Expected number but received "four"\n  → rejected: ingest answers 400 and stores nothing   ✗ not as expected/);
    assert.equal((await outpost(["test", "kit.ts", "-r", "bad.json", "--expect", "rejected"], 30_000, dir)).code, 0);

    const thrown = await outpost(["test", "kit.ts", "-r", "unlucky.json", "--json"], 30_000, dir);
    assert.equal(thrown.code, 1, thrown.out);
    const j = JSON.parse(thrown.out) as { readings: { outcome: string; retryInMs: number; error: { message: string; at: string }; logs: unknown[] }[] };
    assert.equal(j.readings[0]!.outcome, "retry");
    assert.equal(j.readings[0]!.retryInMs, 250);
    assert.equal(j.readings[0]!.error.message, "unlucky 13");
    assert.equal(j.readings[0]!.error.at.replace(/:\d+$/, ""), `${join(dir, "kit.ts")}:10`, "source-mapped to the author's line");
    assert.deepEqual(j.readings[0]!.logs, [{ level: "info", message: "got 13" }]);
    const last = await outpost(["test", "kit.ts", "-r", "unlucky.json", "--attempt", "3", "--expect", "dead-letter"], 30_000, dir);
    assert.equal(last.code, 0, last.out);
    assert.match(last.out, /threw Error: unlucky 13 \(at [^)]*kit\.ts:10:\d+\)\n  → dead-letter \(attempt 3 of 3\): moved to DLQ\n/);
    const perm = await outpost(["test", "kit.ts", "-r", "negative.json", "--expect", "dead-letter"], 30_000, dir);
    assert.equal(perm.code, 0, perm.out);
    assert.match(perm.out, /→ dead-letter \(permanent\): moved to DLQ/);

    const usage = await outpost(["test", "kit.ts"], 30_000, dir);
    assert.equal(usage.code, 2);
    assert.equal(usage.out, "outpost: outpost test needs at least one --reading FILE\n");
    // A SenML file is resolved as ingest would: each record a reading (here the schema wants {n: number}).
    await writeFile(join(dir, "pack.senml.json"), JSON.stringify([{ bn: "dev:", n: "t", v: 1 }, { n: "h", v: 2 }]));
    const senml = await outpost(["test", "kit.ts", "-r", "pack.senml.json", "--expect", "rejected"], 30_000, dir);
    assert.equal(senml.code, 0, senml.out);
    assert.match(senml.out, /reading pack\.senml\.json#0: schema failed\n  schema: n: Invalid type: Expected number but received "dev:t"/);
    assert.match(senml.out, /2 of 2 readings ended as expected \(rejected\)/);
    const broken = await outpost(["test", "kit.ts", "-r", "broken.senml.json"], 30_000, dir);
    assert.equal(broken.code, 1);
    assert.match(broken.out, /Cannot read broken\.senml\.json/);
  });
}

test("npm pack --dry-run holds the runtime, the SDK with its types and the docs, and no tests or benchmarks; deno publish --dry-run passes", async () => {
  const pack = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], ROOT);
  assert.equal(pack.code, 0, pack.out);
  const files = (JSON.parse(pack.out.slice(pack.out.indexOf("["))) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  for (const f of ["bin/outpost.js", "bundles/outpost.js", "dist/handler.js", "dist/testing.js", "dist/types/sdk/handler.d.ts", "dist/types/sdk/testing.d.ts", "src/sdk/register.mjs", "tsconfig.handler.json", "LICENSE", "README.md", "docs/handlers.md"]) {
    assert.ok(files.includes(f), `${f} is in the package`);
  }
  assert.deepEqual(files.filter((f) => /^(test|bench|scripts|\.ci)\//.test(f)), []);
  const deno = await run(BIN("deno"), ["publish", "--dry-run", "--allow-dirty"], ROOT, 240_000);
  assert.equal(deno.code, 0, deno.out);
  assert.match(deno.out, /Success.*Dry run complete/);
});
