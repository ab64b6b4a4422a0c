/**
 * `outpost tail [--handler H] [--level L] [--json]`: the live tail of a running host (GET
 * /v1/events) until Ctrl-C: every message's outcome and every log line, as text or JSON lines.
 * @module
 */
import { ConfigError } from "../errors.ts";
import { env, writeOut } from "../runtime/process.ts";
import type { TailEvent } from "../metrics/events.ts";
import { adminHeaders, hostRequest } from "./client.ts";
import { parseFlags } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

/** `outpost tail`. */
export async function tailCommand(args: string[]): Promise<number> {
  const { values: f } = parseFlags(args, env(), COMMANDS.find((c) => c.name === "tail")!.flags);
  const q = new URLSearchParams();
  if (f.handler) q.set("handler", String(f.handler));
  if (f.level) q.set("level", String(f.level));
  const res = await hostRequest(String(f.url), `/v1/events${q.size ? `?${q}` : ""}`, { headers: { ...adminHeaders(f), accept: "text/event-stream" } });
  if (!res.ok || !res.body) {
    const body = await res.json().catch(() => ({})) as { message?: string };
    throw new ConfigError(`GET /v1/events: ${res.status} ${body.message ?? res.statusText}`);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += value;
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      const event = /^event:\s*(\S+)/m.exec(block)?.[1];
      if (!data || event === "hello") continue;
      if (f.json) writeOut(`${data}\n`);
      else writeOut(`${_text(JSON.parse(data) as TailEvent)}\n`);
    }
  }
  return 0;
}

function _text(e: TailEvent): string {
  const t = e.ts.slice(11, 23);
  if (e.type === "log") return `${t} ${e.level.toUpperCase().padEnd(5)} [${e.scope}] ${e.msg}`;
  if (e.type === "dropped") return `${t} … ${e.count} events ${e.reason === "slow" ? "lost: this tail read too slowly" : "sampled away: more than the tail's rate"}`;
  const where = `${e.handler}${e.seq !== undefined ? `#${e.seq}` : ""}${e.topic ? ` ${e.topic}` : ""}`;
  const dur = e.durationMs !== undefined ? ` (${e.durationMs} ms)` : "";
  return `${t} ${e.outcome.padEnd(13)} ${where}${e.attempt && e.attempt > 1 ? ` attempt ${e.attempt}` : ""}${dur}${e.error ? `: ${e.error}` : ""}`;
}
