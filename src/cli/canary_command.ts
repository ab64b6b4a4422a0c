/**
 * `outpost canary start NAME FILE [--share 10] [--readings N] [--for 10m] [--max-error-rate 5]
 * [--max-dead-letters 0] [--max-p99-ratio 2]`, `outpost canary status [NAME]`, `outpost canary stop NAME`.
 * @module
 */
import { env, writeOut } from "../runtime/process.ts";
import type { CanaryView } from "../release/canary.ts";
import { hostCaller, uploadCandidate } from "./client.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

export async function canaryCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const spec = COMMANDS.find((c) => c.name === "canary")!;
  const { values: f, positional } = parseFlags(rest, env(), spec.flags);
  const call = hostCaller(f);
  const rate = (x: number | null) => (x === null ? "n/a" : `${(x * 100).toFixed(1)} %`);
  const show = (name: string, v: CanaryView) => {
    if (f.json) return writeOut(`${JSON.stringify({ handler: name, canary: v }, null, 2)}\n`);
    writeOut(`${name}: canary ${v.candidate} ${v.state}${v.reason ? ` (${v.reason})` : ""}; ${Math.round(v.policy.share * 1000) / 10} % of the readings beside ${v.active}\n` +
      `  canary: ${v.canary.attempts} attempts, ${v.canary.failed} failed (${rate(v.canary.errorRate)}), ${v.canary.deadLettered} dead letters, p99 ${v.canary.p99Ms ?? "n/a"} ms\n` +
      `  active: ${v.activeVersion.attempts} attempts, ${v.activeVersion.failed} failed (${rate(v.activeVersion.errorRate)}), ${v.activeVersion.deadLettered} dead letters, p99 ${v.activeVersion.p99Ms ?? "n/a"} ms\n`);
  };
  switch (sub) {
    case "start": {
      const [name, file] = positional;
      if (!name || !file) throw new UsageError("outpost canary start NAME FILE: the running handler's name and the new version's source file");
      const r = await uploadCandidate(call, "canary", name, file, {
        share: String(f.share), readings: String(f.readings), for: String(f.for),
        maxErrorRate: String(f["max-error-rate"]), maxDeadLetters: String(f["max-dead-letters"]), maxP99Ratio: String(f["max-p99-ratio"]),
      });
      show(name, r.canary);
      return 0;
    }
    case "stop": {
      const name = positional[0];
      if (!name) throw new UsageError("outpost canary stop NAME");
      show(name, (await call("DELETE", `/v1/handlers/${encodeURIComponent(name)}/canary`)).canary);
      return 0;
    }
    case "status": {
      const { handlers } = await call("GET", "/v1/handlers") as { handlers: { name: string; canary: CanaryView | null }[] };
      const rows = handlers.filter((h) => h.canary && (!positional[0] || h.name === positional[0]));
      if (!rows.length) writeOut(positional[0] ? `${positional[0]} has no canary\n` : "no canaries\n");
      for (const h of rows) show(h.name, h.canary!);
      return 0;
    }
    default:
      throw new UsageError(`Unknown subcommand ${JSON.stringify(sub ?? "")}: use start, stop or status`);
  }
}
