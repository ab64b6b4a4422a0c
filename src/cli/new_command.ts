/**
 * `outpost new NAME`: a handler, a test for it (with `outpost/testing`'s `invoke`), and what the
 * editor needs for types, in a directory of its own. With `--schema-from`, the handler's valibot
 * schema is inferred from a sample reading and the sample becomes the test's reading.
 * @module
 */
import { access, lstat, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { basename, extname, join, relative, resolve } from "node:path";
import { DEFAULT_CBOR_LIMITS } from "../codec/cbor.ts";
import { ConfigError } from "../errors.ts";
import { decodeBody, MEDIA_TYPES } from "../ingest/decode.ts";
import { writeOut } from "../runtime/process.ts";
import { isTopic } from "../sdk/definition.ts";
import { packageRoot } from "../util/package_root.ts";
import { VERSION } from "../version.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

const _DEFAULT_SAMPLE = { sensor: "sensor-1", value: 21.5 };

/** `outpost new NAME [--topic T] [--wasm] [--schema-from READING] [--dir DIR] [--force]`. */
export async function newCommand(args: string[]): Promise<number> {
  const { values: f, positional } = parseFlags(args, {}, COMMANDS.find((c) => c.name === "new")!.flags);
  const name = positional[0];
  if (!name || positional.length > 1) throw new UsageError("outpost new needs one handler name: outpost new NAME");
  if (!/^[a-z0-9][a-z0-9_-]*$/i.test(name)) throw new UsageError(`Invalid handler name ${JSON.stringify(name)}: letters, digits, - and _, not starting with _ (a file name of the workers directory)`);
  const topic = f.topic === undefined ? name : String(f.topic);
  if (!isTopic(topic)) throw new UsageError(`Invalid topic ${JSON.stringify(topic)}: dot-separated tokens of letters, digits, _ and -`);
  const dir = resolve(String(f.dir));
  let sample: unknown = _DEFAULT_SAMPLE;
  let from: string | undefined;
  if (f["schema-from"] !== undefined) {
    from = String(f["schema-from"]);
    sample = await _readSample(from);
  }
  const files: Record<string, string> = {
    [`${name}.ts`]: _handler(name, topic, f.wasm === true, sample, from),
    [`${name}.test.ts`]: _test(name, topic, sample),
  };
  await mkdir(dir, { recursive: true });
  for (const file of Object.keys(files)) {
    if (!f.force && (await _exists(join(dir, file)))) throw new ConfigError(`${join(dir, file)} exists; pick another name or pass --force`);
  }
  const notes: string[] = [];
  const root = await packageRoot().catch(() => undefined);
  if (!(await _exists(join(dir, "package.json")))) {
    files["package.json"] = `${JSON.stringify({
      name: basename(dir).toLowerCase().replace(/[^a-z0-9._-]/g, "-") || "handlers",
      private: true,
      type: "module",
      scripts: { test: "node --import outpost/register --test *.test.ts", typecheck: "tsc -p ." },
      // @types/node: the test imports node:test (Deno and tsc read its types from node_modules).
      devDependencies: { outpost: root ? `file:${root}` : `^${VERSION}`, "@types/node": "^20.0.0" },
    }, null, 2)}\n`;
  } else notes.push("package.json exists: add outpost to its devDependencies");
  if (!(await _exists(join(dir, "tsconfig.json")))) files["tsconfig.json"] = `{ "extends": "outpost/tsconfig.handler.json" }\n`;
  for (const [file, text] of Object.entries(files)) await writeFile(join(dir, file), text);
  // What `npm install` would do, from this outpost's own installation, so types and invoke work
  // at once and offline: outpost itself (a file: dependency) and the @types/node it has.
  const linked: string[] = [];
  if (root && resolve(root) !== dir) {
    for (const [pkg, target] of [["outpost", root], ["@types/node", join(root, "node_modules/@types/node")]] as const) {
      const at = join(dir, "node_modules", pkg);
      if ((await _exists(at)) || !(await _exists(target))) continue;
      await mkdir(join(at, ".."), { recursive: true });
      await symlink(target, at, "dir");
      linked.push(pkg);
    }
  }
  if (linked.length) notes.push(`linked ${linked.join(" and ")} into node_modules from ${root}`);
  if (!(await _exists(join(dir, "node_modules", "outpost")))) notes.push("run npm install here for the editor's types and for invoke in the test");
  const rel = relative(process.cwd(), dir) || ".";
  const at = (p: string) => (rel === "." ? p : join(rel, p));
  writeOut(`wrote ${Object.keys(files).map(at).join(", ")}${notes.length ? `\n  (${notes.join("; ")})` : ""}

  test it:     node --import outpost/register --test ${at(`${name}.test.ts`)}     (or: deno test, bun test)
  try it:      outpost test ${at(`${name}.ts`)} --reading ${from ?? "READING.json"}
  type-check:  npx tsc -p ${rel}
  run it:      outpost run ${rel}      then POST readings to /v1/ingest/${topic}
`);
  return 0;
}

async function _exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return await access(p).then(() => true, () => false);
  }
}

async function _readSample(file: string): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new ConfigError(`Cannot read ${file}: ${(e as Error).message}`);
  }
  const ext = extname(file).toLowerCase();
  const type = ext === ".json" ? MEDIA_TYPES.json : ext === ".cbor" ? MEDIA_TYPES.cbor : undefined;
  if (!type) throw new UsageError(`--schema-from ${file}: use a .json or .cbor file holding one sample reading`);
  try {
    const { readings } = decodeBody(type, bytes, DEFAULT_CBOR_LIMITS);
    // A body that is an array is a batch: its first reading is the sample.
    return readings[0];
  } catch (e) {
    throw new ConfigError(`--schema-from ${file}: ${(e as Error).message}`);
  }
}

/** A valibot schema (as source text) that the sample passes: field names and types, nothing more. */
export function inferSchema(sample: unknown, indent = ""): string {
  if (sample === null || sample === undefined) return "v.nullish(v.unknown())";
  if (typeof sample === "string") return "v.string()";
  if (typeof sample === "number") return "v.number()";
  if (typeof sample === "boolean") return "v.boolean()";
  if (typeof sample === "bigint") return "v.bigint()";
  if (sample instanceof Date) return "v.date()";
  if (sample instanceof Uint8Array) return "v.instance(Uint8Array)";
  if (Array.isArray(sample)) {
    const kinds = [...new Set(sample.map((x) => inferSchema(x, `${indent}  `)))];
    return kinds.length === 1 ? `v.array(${kinds[0]})` : "v.array(v.unknown())";
  }
  if (typeof sample === "object") {
    const entries = Object.entries(sample as Record<string, unknown>);
    if (!entries.length) return "v.object({})";
    const inner = `${indent}  `;
    const rows = entries.map(([k, x]) => `${inner}${_key(k)}: ${inferSchema(x, inner)},`);
    return `v.object({\n${rows.join("\n")}\n${indent}})`;
  }
  return "v.unknown()";
}

function _key(k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k);
}

/** The sample as a TypeScript literal (bytes, dates and big integers included). */
function _literal(x: unknown, indent = ""): string {
  if (x === undefined) return "undefined";
  if (typeof x === "bigint") return `${x}n`;
  if (x instanceof Date) return `new Date(${JSON.stringify(x.toISOString())})`;
  if (x instanceof Uint8Array) return `new Uint8Array([${Array.from(x).join(", ")}])`;
  if (Array.isArray(x)) return `[${x.map((y) => _literal(y, indent)).join(", ")}]`;
  if (x && typeof x === "object") {
    const inner = `${indent}  `;
    const rows = Object.entries(x as Record<string, unknown>).map(([k, y]) => `${inner}${_key(k)}: ${_literal(y, inner)},`);
    return rows.length ? `{\n${rows.join("\n")}\n${indent}}` : "{}";
  }
  return JSON.stringify(x);
}

function _handler(name: string, topic: string, wasm: boolean, sample: unknown, from: string | undefined): string {
  return `import { defineHandler, v } from "outpost/handler";

/** A ${topic} reading${from ? ` (inferred from ${basename(from)}: tighten it, e.g. v.pipe(v.number(), v.minValue(0)))` : ": edit to what your sensors send"}. */
const Reading = ${inferSchema(sample)};

export default defineHandler({
  topic: ${JSON.stringify(topic)},${wasm ? `\n  // QuickJS in WebAssembly: hard memory, CPU and stack caps, nothing but ctx.\n  isolation: "wasm",` : ""}
  // Readings that do not match are refused at ingest (400) and never stored.
  schema: Reading,
  // Attempts in all; between them 1 s, 2 s, 4 s… then the DLQ (\`outpost dlq ls\`).
  retry: { maxAttempts: 5, backoff: "exponential" },
  async handle(reading, ctx) {
    ctx.log("handling", ctx.id);
    // Stored in the OUTBOX stream as out.${name}; resolves once JetStream has it.
    await ctx.publish(${JSON.stringify(name)}, { topic: ctx.topic, at: new Date().toISOString(), reading });
  },
});
`;
}

function _test(name: string, topic: string, sample: unknown): string {
  return `// Run: node --import outpost/register --test ${name}.test.ts   (or: deno test ${name}.test.ts, bun test ${name}.test.ts)
import { test } from "node:test";
import assert from "node:assert/strict";
import { invoke } from "outpost/testing";
import handler from "./${name}.ts";

const sample = ${_literal(sample)};

test("${name} publishes what it handled", async () => {
  const r = await invoke(handler, sample, { now: new Date("2026-01-01T00:00:00Z") });
  assert.equal(r.outcome, "ack", r.error?.stack ?? "");
  assert.deepEqual(r.published, [{ subject: ${JSON.stringify(name)}, value: { topic: ${JSON.stringify(topic)}, at: "2026-01-01T00:00:00.000Z", reading: sample } }]);
});

test("${name} is retried when its output cannot be stored", async () => {
  const r = await invoke(handler, sample, { failPublish: true });
  assert.equal(r.outcome, "retry");
  assert.equal(r.retryInMs, 1000);
});

test("${name} refuses a reading that does not match its schema", async () => {
  const r = await invoke(handler, { unexpected: true });
  assert.equal(r.outcome, "rejected");
});
`;
}
