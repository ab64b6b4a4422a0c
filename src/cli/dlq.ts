import { ConfigError } from "../errors.ts";
import { env, writeOut } from "../runtime/process.ts";
import { parseFlags, type FlagSpec } from "./flags.ts";

/** Flags of `outpost dlq …`. */
export const DLQ_FLAGS: readonly FlagSpec[] = [
  { name: "url", kind: "string", default: "http://127.0.0.1:8080", arg: "URL", help: "the host to talk to" },
  { name: "admin-token", kind: "string", arg: "TOKEN", help: "its admin token", secret: true },
  { name: "handler", kind: "string", arg: "NAME", help: "only this handler's dead letters" },
  { name: "topic", kind: "string", arg: "TOPIC", help: "only readings of this topic (ls)" },
  { name: "limit", kind: "int", default: "50", arg: "N", help: "entries per page (ls)" },
  { name: "after", kind: "int", arg: "ID", help: "start after this id (ls)" },
  { name: "json", kind: "boolean", default: "false", help: "print JSON" },
];

/** Usage of `outpost dlq`. */
export const DLQ_HELP = `outpost dlq ls [--handler NAME] [--topic T] [--limit N] [--after ID]   list dead letters
outpost dlq show ID                                                      one dead letter, in full
outpost dlq replay ID | --handler NAME                                   store again under its topic (once), then remove
outpost dlq purge ID | --handler NAME                                    delete
  (--url URL, default http://127.0.0.1:8080; --admin-token TOKEN or OUTPOST_ADMIN_TOKEN)
`;

/**
 * `outpost dlq <ls|show|replay|purge>`: the dead-letter admin API from the command line.
 * @returns the exit code
 */
export async function dlqCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values: f, positional } = parseFlags(rest, env(), DLQ_FLAGS);
  const base = String(f.url).replace(/\/$/, "");
  const token = f["admin-token"] as string | undefined;
  const call = async (method: string, path: string): Promise<any> => {
    const res = await fetch(`${base}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new ConfigError(`${method} ${path}: ${res.status} ${body.message ?? res.statusText}`);
    return body;
  };
  const out = (v: unknown) => writeOut(`${JSON.stringify(v, null, 2)}\n`);
  const id = positional[0];
  const handler = f.handler as string | undefined;
  switch (sub) {
    case "ls": {
      const q = new URLSearchParams();
      for (const k of ["handler", "topic", "limit", "after"]) if (f[k] !== undefined) q.set(k, String(f[k]));
      const page = await call("GET", `/v1/dlq?${q}`);
      if (f.json) out(page);
      else {
        for (const e of page.entries) {
          writeOut(`${String(e.id).padStart(6)}  ${e.handler.padEnd(20)} ${e.subject.padEnd(24)} seq ${e.seq}  ${e.attempts} attempts  ${e.error.name}: ${e.error.message}\n`);
        }
        writeOut(page.next ? `more: --after ${page.next}\n` : `${page.entries.length} shown\n`);
      }
      return 0;
    }
    case "show":
      if (!id) throw new ConfigError("outpost dlq show needs an id");
      out(await call("GET", `/v1/dlq/${id}`));
      return 0;
    case "replay":
      if (id) out(await call("POST", `/v1/dlq/${id}/replay`));
      else if (handler) out(await call("POST", `/v1/dlq/replay?handler=${encodeURIComponent(handler)}`));
      else throw new ConfigError("outpost dlq replay needs an id or --handler NAME");
      return 0;
    case "purge": {
      if (id) {
        out(await call("DELETE", `/v1/dlq/${id}`));
        return 0;
      }
      if (!handler) throw new ConfigError("outpost dlq purge needs an id or --handler NAME");
      let deleted = 0;
      // Bounded by the stream: every page's entries are deleted before the next is asked for.
      for (;;) {
        const page = await call("GET", `/v1/dlq?handler=${encodeURIComponent(handler)}&limit=500`);
        for (const e of page.entries) await call("DELETE", `/v1/dlq/${e.id}`);
        deleted += page.entries.length;
        if (!page.next) break;
      }
      out({ handler, deleted });
      return 0;
    }
    default:
      writeOut(DLQ_HELP);
      return sub ? 2 : 0;
  }
}
