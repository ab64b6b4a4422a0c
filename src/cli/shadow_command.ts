/**
 * `outpost shadow start NAME FILE [--readings N] [--for 1h]`, `outpost shadow stop NAME`,
 * `outpost shadow status [NAME]`: a candidate version beside the active one on a running host.
 * @module
 */
import { env, writeOut } from "../runtime/process.ts";
import type { ShadowView } from "../release/shadow.ts";
import { hostCaller, uploadCandidate } from "./client.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

export async function shadowCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const spec = COMMANDS.find((c) => c.name === "shadow")!;
  const { values: f, positional } = parseFlags(rest, env(), spec.flags);
  const call = hostCaller(f);
  const show = (name: string, v: ShadowView) => {
    if (f.json) return writeOut(`${JSON.stringify({ handler: name, shadow: v }, null, 2)}\n`);
    const pct = v.agreement === null ? "n/a" : `${(v.agreement * 100).toFixed(1)} %`;
    writeOut(`${name}: shadow ${v.candidate} ${v.state}${v.endReason ? ` (${v.endReason})` : ""}; ${v.compared} of ${v.limits.readings} readings compared, agreement ${pct}\n` +
      `  agreed ${v.counts.agreed}, different output ${v.counts["different output"]}, new failures ${v.counts["new failure"]}, fixed ${v.counts["fixed failure"]}, both failed ${v.counts["both failed"]}\n` +
      `  median ms: active ${v.latencyMs.active ?? "n/a"}, shadow ${v.latencyMs.shadow ?? "n/a"}\n`);
    for (const x of v.examples) writeOut(`  reading ${x.seq}: ${x.verdict}: active ${x.active}; shadow ${x.shadow}\n`);
  };
  switch (sub) {
    case "start": {
      const [name, file] = positional;
      if (!name || !file) throw new UsageError("outpost shadow start NAME FILE: the running handler's name and the candidate's source file");
      const r = await uploadCandidate(call, "shadow", name, file, { readings: String(f.readings), for: String(f.for) });
      show(name, r.shadow);
      return 0;
    }
    case "stop": {
      const name = positional[0];
      if (!name) throw new UsageError("outpost shadow stop NAME");
      const r = await call("DELETE", `/v1/handlers/${encodeURIComponent(name)}/shadow`);
      show(name, r.shadow);
      return 0;
    }
    case "status": {
      const { handlers } = await call("GET", "/v1/handlers") as { handlers: { name: string; shadow: ShadowView | null }[] };
      const rows = handlers.filter((h) => h.shadow && (!positional[0] || h.name === positional[0]));
      if (!rows.length) writeOut(positional[0] ? `${positional[0]} has no shadow run\n` : "no shadow runs\n");
      for (const h of rows) show(h.name, h.shadow!);
      return 0;
    }
    default:
      throw new UsageError(`Unknown subcommand ${JSON.stringify(sub ?? "")}: use start, stop or status`);
  }
}
