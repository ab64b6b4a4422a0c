/**
 * `outpost replay CANDIDATE [--against FILE] --readings FILE… | --topic T`: a candidate version of
 * a handler against the version it would replace, on recorded readings, both in their real tier
 * and with no side effects (every publish and emit is captured, none stored). Prints, per reading
 * that differs, how (different output, new failure, fixed failure) and a summary; the exit code
 * is 1 when the candidate is worse by `--fail-on`.
 * @module
 */
import { encodeCbor } from "../codec/cbor.ts";
import { ConfigError } from "../errors.ts";
import { writeOut } from "../runtime/process.ts";
import { inspect } from "../sandbox/context.ts";
import { adminHeaders, fetchRecording, hostRequest } from "./client.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { jsonOut, OfflineHandler, ReadingFiles, type OfflineRun } from "./offline.ts";
import { COMMANDS } from "./specs.ts";

/** How a reading fared under the candidate, next to the baseline. */
export type Verdict = "same" | "different output" | "new failure" | "fixed failure" | "different failure";

const _failed = (r: OfflineRun) => r.outcome !== "ack";
const _outputs = (r: OfflineRun) => encodeCbor({ p: r.published, e: r.emitted });
const _sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Compare one reading's two runs. */
export function verdict(base: OfflineRun, cand: OfflineRun): Verdict {
  if (!_failed(base) && _failed(cand)) return "new failure";
  if (_failed(base) && !_failed(cand)) return "fixed failure";
  if (_failed(base) && _failed(cand)) return base.outcome === cand.outcome && base.error?.message === cand.error?.message ? "same" : "different failure";
  return _sameBytes(_outputs(base), _outputs(cand)) ? "same" : "different output";
}

function _describe(r: OfflineRun): string[] {
  return [
    ...r.published.map((p) => `publish out.${p.subject} ${inspect(p.value)}`),
    ...r.emitted.map((e) => `emit ingest.${e.topic} ${inspect(e.value)}${e.delayMs !== undefined ? ` (after ${e.delayMs} ms)` : ""}`),
    ...(r.outcome === "ack" ? [] : [`${r.outcome}${r.error ? `: ${r.error.name}: ${r.error.message}` : r.issues.length ? `: ${r.issues[0]!.path} ${r.issues[0]!.message}` : ""}`]),
  ];
}

/** `outpost replay`. */
export async function replayCommand(args: string[]): Promise<number> {
  const spec = COMMANDS.find((c) => c.name === "replay")!;
  const { values: f, positional } = parseFlags(args, {}, spec.flags);
  const candidate = positional[0];
  if (!candidate || positional.length > 1) throw new UsageError("outpost replay needs one candidate handler file: outpost replay CANDIDATE --readings FILE");
  const files = (f.readings as string[] | undefined) ?? [];
  const topic = f.topic as string | undefined;
  if (!files.length && !topic) throw new UsageError("outpost replay needs readings: --readings FILE (from outpost record export) or --topic T (a running host's recording)");
  const failOn = String(f["fail-on"]);
  if (failOn !== "new-failures" && failOn !== "differences") throw new UsageError(`--fail-on must be new-failures or differences, got ${JSON.stringify(failOn)}`);
  const base = String(f.url).replace(/\/$/, "");
  const auth = adminHeaders(f);

  let inputs: ReadingFiles;
  if (files.length) inputs = await ReadingFiles.read(files);
  else inputs = ReadingFiles.fromBytes(`${topic}`, (await fetchRecording(f, topic!)).bytes);
  // The version it would replace: a file, or the active version of a running host.
  let against = f.against as string | undefined;
  const wasm = String(f.isolation) === "wasm";
  const cand = await OfflineHandler.open(candidate, wasm);
  let baseline: OfflineHandler | undefined;
  try {
    if (!against) {
      const res = await hostRequest(base, "/v1/handlers", { headers: auth });
      if (!res.ok) throw new ConfigError(`GET /v1/handlers: ${res.status}; pass --against FILE to compare with a file instead`);
      const { handlers } = (await res.json()) as { handlers: { name: string; file: string }[] };
      const active = handlers.find((h) => h.name === cand.built.name);
      if (!active) throw new ConfigError(`The host at ${base} runs no handler named ${cand.built.name}; pass --against FILE`);
      against = active.file;
    }
    baseline = await OfflineHandler.open(against, wasm);
    const readings = inputs.decode(cand.info.senml);
    const counts: Record<Verdict, number> = { same: 0, "different output": 0, "new failure": 0, "fixed failure": 0, "different failure": 0 };
    const rows: { source: string; verdict: Verdict; baseline: OfflineRun; candidate: OfflineRun }[] = [];
    for (const [i, r] of readings.entries()) {
      const b = await baseline.run(r, i + 1, 1);
      const c = await cand.run(r, i + 1, 1);
      const v = verdict(b, c);
      counts[v]++;
      rows.push({ source: r.source, verdict: v, baseline: b, candidate: c });
      if (!f.json && v !== "same") {
        writeOut(`reading ${r.source}: ${v}\n`);
        for (const l of _describe(b)) writeOut(`  - ${l}\n`);
        for (const l of _describe(c)) writeOut(`  + ${l}\n`);
      }
    }
    const worse = failOn === "differences" ? readings.length - counts.same : counts["new failure"];
    if (f.json) {
      writeOut(jsonOut({ candidate, against, readings: readings.length, counts, worse: worse > 0, rows }));
    } else {
      writeOut(`${readings.length} reading${readings.length === 1 ? "" : "s"}: ${counts.same} same, ${counts["different output"]} different output, ` +
        `${counts["new failure"]} new failure${counts["new failure"] === 1 ? "" : "s"}, ${counts["fixed failure"]} fixed, ${counts["different failure"]} failing differently` +
        `${readings.length - counts.same === 0 ? " (the candidate is identical on these readings)" : ""}\n`);
    }
    return worse > 0 ? 1 : 0;
  } finally {
    await cand.close();
    await baseline?.close();
  }
}
