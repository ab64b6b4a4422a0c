/**
 * `outpost test HANDLER --reading FILE…`: the handler built as the host builds it, run in its real
 * tier (a worker, or QuickJS in WebAssembly) on readings from files, with no broker and no HTTP.
 * Prints per reading the schema result, every output, the logs and the outcome the host would act
 * on; the exit code says whether every reading ended as expected (`--expect`, default ack).
 * @module
 */
import { basename, extname } from "node:path";
import { writeOut } from "../runtime/process.ts";
import { inspect } from "../sandbox/context.ts";
import type { HandlerInfo } from "../sdk/definition.ts";
import type { Outcome } from "../sdk/testing.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { jsonOut, OfflineHandler, ReadingFiles, type OfflineRun } from "./offline.ts";
import { COMMANDS } from "./specs.ts";

const _OUTCOMES: readonly Outcome[] = ["ack", "retry", "dead-letter", "rejected"];

/** One reading's run. */
interface _Run extends OfflineRun {
  source: string;
  pass: boolean;
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
  // Files that cannot be read as readings fail before anything is built.
  const inputs = await ReadingFiles.read(files);

  const h = await OfflineHandler.open(file, isolation === "wasm");
  const runs: _Run[] = [];
  try {
    if (!f.json) writeOut(`${h.built.name}: ${h.info.isolation} tier, ${_policy(h.info)}\n`);
    for (const [i, r] of inputs.decode(h.info.senml).entries()) {
      const run: _Run = { source: r.source, ...(await h.run(r, i + 1, attempt)), pass: false };
      run.pass = run.outcome === expect;
      runs.push(run);
      if (!f.json) writeOut(_text(run, attempt, h.info));
    }
  } finally {
    await h.close();
  }
  const passed = runs.filter((r) => r.pass).length;
  if (f.json) writeOut(jsonOut({ handler: basename(file, extname(file)), expect, passed, failed: runs.length - passed, readings: runs }));
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
