/**
 * `outpost record export TOPIC [--since T] [--limit N] [--out FILE]`: a running host's recording of
 * a topic as a CBOR sequence (each reading as it was stored), the file `outpost test` and
 * `outpost replay` read.
 * @module
 */
import { writeFile } from "node:fs/promises";
import { env, writeErr } from "../runtime/process.ts";
import { fetchRecording } from "./client.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

export async function recordCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const spec = COMMANDS.find((c) => c.name === "record")!;
  const { values: f, positional } = parseFlags(rest, env(), spec.flags);
  if (sub !== "export") throw new UsageError(`Unknown subcommand ${JSON.stringify(sub ?? "")}: use outpost record export TOPIC`);
  const topic = positional[0];
  if (!topic || positional.length > 1) throw new UsageError("outpost record export needs one topic: outpost record export TOPIC > readings.cbor");
  const { bytes, count: n } = await fetchRecording(f, topic);
  if (f.out) await writeFile(String(f.out), bytes);
  else await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (e) => (e ? reject(e) : resolve())));
  writeErr(`${n} reading${n === "1" ? "" : "s"} of ${topic} (${bytes.length} bytes)${f.out ? ` written to ${f.out}` : ""}\n`);
  return 0;
}
