/**
 * `outpost hub attach --nats URL --device DOMAIN [--urgent SUBJECT] [--record TOPICS]` and
 * `outpost hub status --nats URL [--json | --prometheus]`.
 * @module
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { attachDevice, hubStatus, hubStatusMetrics } from "../hub/attach.ts";
import { parseWindow } from "../release/canary.ts";
import { env, writeOut } from "../runtime/process.ts";
import { connectNats } from "./client.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

export async function hubCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values: f } = parseFlags(rest, env(), COMMANDS.find((c) => c.name === "hub")!.flags);
  if (sub !== "attach" && sub !== "status") throw new UsageError(`Unknown subcommand ${JSON.stringify(sub ?? "")}: use attach or status`);
  if (sub === "attach" && !f.device) throw new UsageError("outpost hub attach --nats URL --device DOMAIN: the device's JetStream domain (its --nats-domain)");
  const maxAgeMs = parseWindow(String(f["max-age"]), 3650 * 86_400_000);
  if (maxAgeMs === undefined) throw new UsageError(`--max-age ${JSON.stringify(f["max-age"])}: a duration such as 30d or 12h`);
  const nc = await connectNats(f, `outpost-hub-${sub}`);
  try {
    const jsm = await jetstreamManager(nc, { timeout: 10_000 });
    if (sub === "attach") {
      const device = String(f.device);
      const rows = await attachDevice(jsm, {
        device, urgent: f.urgent as string | undefined, maxAgeMs, maxBytes: f["max-bytes"] as number | undefined, replicas: f.replicas as number,
        record: f.record === undefined ? undefined : String(f.record).split(",").map((t) => t.trim()).filter(Boolean),
      });
      if (f.json) writeOut(`${JSON.stringify({ device, streams: rows }, null, 2)}\n`);
      else for (const r of rows) writeOut(`${r.stream}: ${r.created ? "created" : "updated"}, sources ${r.source}${r.filter ? ` (${r.filter})` : ""} of device ${device} through $JS.${device}.API\n`);
      return 0;
    }
    const rows = await hubStatus(jsm);
    if (f.prometheus) return (writeOut(hubStatusMetrics(rows)), 0);
    if (f.json) return (writeOut(`${JSON.stringify({ devices: rows }, null, 2)}\n`), 0);
    if (!rows.length) writeOut("no devices: none attached (outpost hub attach) and none reporting (outpost run --hub)\n");
    for (const r of rows) {
      const rep = r.report as { release?: { active: number; version: string; probation: boolean }; canary?: { release: number; state: string; share: number; reason: string | null } | null; outbox?: { messages: number; atRisk: number } } | null;
      const rel = rep?.release ? (rep.release.active ? `release ${rep.release.active} (${rep.release.version})${rep.release.probation ? " on probation" : ""}` : "its --workers directory") : "unknown";
      writeOut(`${r.device}: last report ${r.lastReportAgeSeconds === null ? "never" : `${r.lastReportAgeSeconds} s ago`}; runs ${rel}; ` +
        `behind ${r.behind.results ?? "?"} results${r.behind.bytes !== null ? ` (~${r.behind.bytes} bytes)` : ""}\n`);
      if (rep?.canary) writeOut(`  canary: release ${rep.canary.release} ${rep.canary.state}${rep.canary.state === "running" ? ` on ${Math.round(rep.canary.share * 1000) / 10} % of the readings` : ""}${rep.canary.reason ? ` (${rep.canary.reason})` : ""}\n`);
      for (const s of r.streams) {
        writeOut(`  ${s.stream}: ${s.messages} messages, ${s.bytes} bytes; lag ${s.lag ?? "?"}; last activity ${s.activeSecondsAgo === null ? "never" : `${s.activeSecondsAgo} s ago`}${s.error ? `; error: ${s.error}` : ""}\n`);
      }
    }
    return 0;
  } finally {
    await nc.close();
  }
}
