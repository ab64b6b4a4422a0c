/**
 * The schema isolate: one worker that imports every handler's schema module (the handler's
 * definition without the isolate bootstrap) and validates readings for ingest. Handler code
 * evaluates here only at module level; `handle` never runs here, and nothing here runs in the host.
 */
import { toErrorData } from "../errors.ts";
import { hostPort } from "../runtime/isolate_port.ts";
import type { HostToValidator, ReadingIssue, ValidatorToHost } from "../sandbox/protocol.ts";

type _Validate = (v: unknown) => unknown;
type _Issue = { message: string; path?: readonly ({ key: PropertyKey } | PropertyKey)[] };

/** Serve validation requests from the host. */
export async function runValidator(): Promise<void> {
  const port = await hostPort();
  const send = (m: ValidatorToHost) => port.post(m);
  const schemas = new Map<string, _Validate>();
  port.onMessage(async (raw) => {
    const m = raw as HostToValidator;
    if (m.type === "load") {
      try {
        const mod = (await import(m.url)) as { default?: { schema?: { "~standard"?: { validate: _Validate } } } };
        const std = mod.default?.schema?.["~standard"];
        if (std) schemas.set(m.key, (v) => std.validate(v));
        send({ type: "loaded", key: m.key });
      } catch (e) {
        send({ type: "loaded", key: m.key, error: toErrorData(e) });
      }
    } else if (m.type === "unload") {
      schemas.delete(m.key);
    } else if (m.type === "validate") {
      const results = [];
      for (const item of m.items) {
        try {
          results.push({ id: item.id, issues: await _check(schemas, item.keys, item.readings) });
        } catch (e) {
          results.push({ id: item.id, issues: [], error: toErrorData(e) });
        }
      }
      send({ type: "validated", results });
    }
  });
}

async function _check(schemas: Map<string, _Validate>, keys: string[], readings: unknown[]): Promise<ReadingIssue[]> {
  const issues: ReadingIssue[] = [];
  const seen = new Set<string>();
  for (const key of keys) {
    const validate = schemas.get(key);
    // Never "valid" for a schema this isolate does not hold: the host answers 503 and the sensor retries.
    if (!validate) throw Object.assign(new Error(`The schema ${key} is not loaded in the schema isolate yet`), { name: "SchemaNotLoadedError" });
    for (let i = 0; i < readings.length; i++) {
      let r = validate(readings[i]) as { issues?: _Issue[] } | Promise<{ issues?: _Issue[] }>;
      if (r instanceof Promise) r = await r;
      for (const issue of r.issues ?? []) {
        // Several handlers of one topic often share a schema: report each problem once.
        const found = { index: i, path: _path(issue.path), message: issue.message };
        const id = `${found.index}\u0000${found.path}\u0000${found.message}`;
        if (!seen.has(id)) issues.push(found);
        seen.add(id);
      }
    }
  }
  return issues;
}

function _path(path: _Issue["path"]): string {
  if (!path) return "";
  return path.map((p) => String(typeof p === "object" && p !== null && "key" in p ? p.key : p)).join(".");
}
