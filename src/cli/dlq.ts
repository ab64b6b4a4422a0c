import { env, writeOut } from "../runtime/process.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { hostCaller } from "./client.ts";
import { commandHelp, COMMANDS } from "./specs.ts";

/**
 * `outpost dlq <ls|show|replay|purge>`: the dead-letter admin API from the command line.
 * @returns the exit code
 */
export async function dlqCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const spec = COMMANDS.find((c) => c.name === "dlq")!;
  const { values: f, positional } = parseFlags(rest, env(), spec.flags);
  const call = hostCaller(f);
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
      if (!id) throw new UsageError("outpost dlq show needs an id");
      {
        const e = await call("GET", `/v1/dlq/${id}`);
        if (f.json) out(e);
        else {
          writeOut(`dead letter ${e.id}: ${e.handler} (version ${e.version}), ${e.subject} seq ${e.seq}, ${e.attempts} attempts\n`);
          writeOut(`  stored ${e.storedAt}, failed ${e.failedAt}\n  error: ${e.error.name}: ${e.error.message}\n`);
          if (e.firstError && e.firstError.message !== e.error.message) writeOut(`  first error: ${e.firstError.name}: ${e.firstError.message}\n`);
          writeOut(`  payload: ${JSON.stringify(e.payload)}\n`);
        }
      }
      return 0;
    case "replay":
      if (id) {
        const r = await call("POST", `/v1/dlq/${id}/replay`);
        if (f.json) out(r);
        else writeOut(`replayed dead letter ${r.id} as INGEST seq ${r.seq}\n`);
      } else if (handler) {
        const r = await call("POST", `/v1/dlq/replay?handler=${encodeURIComponent(handler)}`);
        if (f.json) out(r);
        else writeOut(`replayed ${r.replayed} dead letters of ${r.handler}\n`);
      } else throw new UsageError("outpost dlq replay needs an id or --handler NAME");
      return 0;
    case "purge": {
      if (id) {
        const r = await call("DELETE", `/v1/dlq/${id}`);
        if (f.json) out(r);
        else writeOut(`deleted dead letter ${r.id}\n`);
        return 0;
      }
      if (!handler) throw new UsageError("outpost dlq purge needs an id or --handler NAME");
      let deleted = 0;
      // Bounded by the stream: every page's entries are deleted before the next is asked for.
      for (;;) {
        const page = await call("GET", `/v1/dlq?handler=${encodeURIComponent(handler)}&limit=500`);
        for (const e of page.entries) await call("DELETE", `/v1/dlq/${e.id}`);
        deleted += page.entries.length;
        if (!page.next) break;
      }
      if (f.json) out({ handler, deleted });
      else writeOut(`deleted ${deleted} dead letters of ${handler}\n`);
      return 0;
    }
    default:
      writeOut(commandHelp(spec));
      return sub ? 2 : 0;
  }
}
