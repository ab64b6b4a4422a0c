/**
 * `outpost test HANDLER --reading FILE…`: the handler built as the host builds it, run in its real
 * tier (a worker, or QuickJS in WebAssembly) on readings from files, with no broker and no HTTP.
 * Prints per reading the schema result, every output, the logs and the outcome the host would act
 * on; the exit code says whether every reading ended as expected (`--expect`, default ack).
 * @module
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, extname, join } from "node:path";
import { isPublishSubject } from "../broker/subjects.ts";
import { buildHandler, buildValidator } from "../bundler/bundle.ts";
import { decodeCbor, DEFAULT_CBOR_LIMITS, encodeCbor } from "../codec/cbor.ts";
import { ConfigError, toErrorData, type ErrorData } from "../errors.ts";
import { decodeBody, MEDIA_TYPES } from "../ingest/decode.ts";
import { writeOut } from "../runtime/process.ts";
import { inspect } from "../sandbox/context.ts";
import { HandlerError, type Isolate } from "../sandbox/isolate.ts";
import { selectIsolate } from "../sandbox/select.ts";
import { mapErrorData } from "../sandbox/source_map.ts";
import { Validator } from "../schemas/validator.ts";
import { isTopic, type HandlerInfo } from "../sdk/definition.ts";
import { judgeFailure, type Outcome } from "../sdk/testing.ts";
import { createLogger } from "../util/log.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

const _OUTCOMES: readonly Outcome[] = ["ack", "retry", "dead-letter", "rejected"];

/** One reading's run. */
interface _Run {
  source: string;
  issues: { path: string; message: string }[];
  published: { subject: string; value: unknown }[];
  emitted: { topic: string; value: unknown; delayMs?: number }[];
  logs: { level: string; message: string }[];
  outcome: Outcome;
  error?: ErrorData;
  retryInMs?: number;
  pass: boolean;
}

/** The media type of a readings file, from its name. */
function _mediaType(file: string): string {
  const f = file.toLowerCase();
  if (/\.senml\.json$|\.senml$/.test(f)) return MEDIA_TYPES.senmlJson;
  if (/\.senml\.cbor$/.test(f)) return MEDIA_TYPES.senmlCbor;
  if (f.endsWith(".json")) return MEDIA_TYPES.json;
  if (f.endsWith(".cborseq") || f.endsWith(".cbor-seq") || f.endsWith(".cbors")) return MEDIA_TYPES.cborSeq;
  if (f.endsWith(".cbor")) return MEDIA_TYPES.cbor;
  throw new UsageError(`${file}: cannot tell its encoding from the name: use .json (one reading or an array), .cbor (one item or an array), .cborseq (a CBOR sequence), .senml.json or .senml.cbor (a SenML pack)`);
}

/** `outpost test HANDLER --reading FILE [--reading FILE…] [--attempt N] [--expect OUTCOME] [--json]`. */
export async function testCommand(args: string[]): Promise<number> {
  const spec = COMMANDS.find((c) => c.name === "test")!;
  const { values: f, positional } = parseFlags(args, {}, spec.flags);
  const file = positional[0];
  if (!file || positional.length > 1) throw new UsageError("outpost test needs one handler file: outpost test HANDLER --reading FILE");
  const files = (f.reading as string[] | undefined) ?? [];
  if (!files.length) throw new UsageError("outpost test needs at least one --reading FILE");
  const expect = String(f.expect) as Outcome;
  if (!_OUTCOMES.includes(expect)) throw new UsageError(`--expect must be one of ${_OUTCOMES.join(", ")}, got ${JSON.stringify(f.expect)}`);
  const attempt = f.attempt as number;
  const isolation = String(f.isolation);
  if (isolation !== "auto" && isolation !== "wasm") throw new UsageError(`--isolation must be auto or wasm, got ${JSON.stringify(isolation)}`);

  const inputs: { file: string; type: string; bytes: Uint8Array }[] = [];
  for (const r of files) {
    const type = _mediaType(r);
    try {
      inputs.push({ file: r, type, bytes: await readFile(r) });
    } catch (e) {
      throw new ConfigError(`Cannot read ${r}: ${(e as Error).message}`);
    }
  }
  /** The readings of every file, decoded as ingest would for this handler (SenML by its `senml`). */
  const decodeAll = (senml: "records" | "pack" | undefined) => inputs.flatMap(({ file: r, type, bytes }) => {
    let decoded;
    try {
      decoded = decodeBody(type, bytes, DEFAULT_CBOR_LIMITS, { senml });
    } catch (e) {
      throw new ConfigError(`${r}: ${(e as Error).message}`);
    }
    return decoded.readings.map((value, i) => ({
      source: decoded.readings.length > 1 ? `${basename(r)}#${i}` : basename(r),
      value,
      raw: decoded.raw?.[i] ?? encodeCbor(value),
    }));
  });
  // Files that cannot be read as readings fail before anything is built.
  decodeAll(undefined);

  const dir = await mkdtemp(join(tmpdir(), "outpost-test-"));
  const quiet = createLogger("error", () => {}, "test");
  let iso: Isolate | undefined;
  let validator: Validator | undefined;
  let current: _Run | undefined;
  const runs: _Run[] = [];
  try {
    const built = await buildHandler(file, join(dir, "build"));
    const make = () => selectIsolate(built, undefined, {
      name: built.name,
      url: built.handlerUrl,
      onLog: (level, message) => current?.logs.push({ level, message }),
      onCall: async (op, subject, data, opts) => {
        if (op === "publish" && !isPublishSubject(subject)) throw new TypeError(`ctx.publish: invalid subject ${JSON.stringify(subject)} (dot-separated tokens, no wildcards)`);
        if (op === "emit" && !isTopic(subject)) throw new TypeError(`ctx.emit: invalid topic ${JSON.stringify(subject)}`);
        const value = decodeCbor(data);
        if (op === "publish") current?.published.push({ subject, value });
        else current?.emitted.push(opts?.delayMs === undefined ? { topic: subject, value } : { topic: subject, value, delayMs: opts.delayMs });
      },
      onCrash: () => {},
    }, isolation === "wasm");
    iso = make();
    const info = await iso.start();
    if (info.hasSchema) {
      validator = new Validator(await buildValidator(join(dir, "build")), quiet);
      await validator.start();
      if (info.isolation === "wasm") await validator.loadWasm(built.name, built.guestUrl, info);
      else await validator.load(built.name, built.schemaUrl);
    }
    if (!f.json) writeOut(`${built.name}: ${info.isolation} tier, ${_policy(info)}\n`);
    const readings = decodeAll(info.senml);
    const subject = info.subjects[0]!.replace(/\.>$/, ".test").replace(/\*/g, "test");
    for (const [i, r] of readings.entries()) {
      const run: _Run = { source: r.source, issues: [], published: [], emitted: [], logs: [], outcome: "ack", pass: false };
      current = run;
      if (validator) {
        run.issues = (await validator.validate([built.name], [r.value])).map((x) => ({ path: x.path, message: x.message }));
      }
      if (run.issues.length) run.outcome = "rejected";
      else {
        try {
          await iso.invoke({ subject, seq: i + 1, attempt, data: r.raw }, info.timeoutMs);
        } catch (e) {
          run.error = e instanceof HandlerError ? await mapErrorData(e.data, built.bundleFiles ?? []) : toErrorData(e);
          Object.assign(run, judgeFailure(e instanceof HandlerError && e.permanent, attempt, info));
          if (!(e instanceof HandlerError)) {
            // A timeout or a crash: the isolate is gone, as in the host the next reading gets a new one.
            await iso.terminate().catch(() => {});
            iso = make();
            await iso.start();
          }
        }
      }
      run.pass = run.outcome === expect;
      runs.push(run);
      if (!f.json) writeOut(_text(run, attempt, info));
    }
  } finally {
    current = undefined;
    await iso?.terminate().catch(() => {});
    await validator?.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
  const passed = runs.filter((r) => r.pass).length;
  if (f.json) writeOut(`${JSON.stringify({ handler: basename(file, extname(file)), expect, passed, failed: runs.length - passed, readings: runs }, (_k, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Uint8Array ? { bytes: x.length } : x), 2)}\n`);
  else writeOut(`${passed} of ${runs.length} reading${runs.length === 1 ? "" : "s"} ended as expected (${expect})\n`);
  return passed === runs.length ? 0 : 1;
}

function _policy(info: HandlerInfo): string {
  const backoff = Array.isArray(info.backoff) ? `backoff ${info.backoff.join(", ")} ms` : `backoff ${info.backoff.baseMs} ms doubling to ${info.backoff.maxMs} ms`;
  return `${info.maxAttempts} attempts, ${backoff}, timeout ${info.timeoutMs} ms, on ${info.subjects.join(", ")}`;
}

function _text(r: _Run, attempt: number, info: HandlerInfo): string {
  const lines = [`reading ${r.source}: ${r.issues.length ? "schema failed" : "schema ok"}`];
  for (const i of r.issues) lines.push(`  schema: ${i.path ? `${i.path}: ` : ""}${i.message}`);
  for (const p of r.published) lines.push(`  publish out.${p.subject} ${inspect(p.value)}`);
  for (const e of r.emitted) lines.push(`  emit ingest.${e.topic} ${inspect(e.value)}${e.delayMs !== undefined ? ` (after ${e.delayMs} ms)` : ""}`);
  for (const l of r.logs) lines.push(`  log ${l.level.padEnd(5)} ${l.message}`);
  if (r.error) lines.push(`  threw ${r.error.name}: ${r.error.message}${r.error.at ? ` (at ${r.error.at})` : ""}`);
  const outcome = r.outcome === "ack" ? "ack"
    : r.outcome === "rejected" ? "rejected: ingest answers 400 and stores nothing"
    : r.outcome === "retry" ? `retry in ${r.retryInMs} ms ±${Math.round(info.jitter * 100)} % (attempt ${attempt} of ${info.maxAttempts})`
    : `dead-letter (${r.error?.name === "PermanentError" ? "permanent" : `attempt ${attempt} of ${info.maxAttempts}`}): moved to DLQ`;
  lines.push(`  → ${outcome}${r.pass ? "" : "   ✗ not as expected"}`);
  return `${lines.join("\n")}\n`;
}
