/**
 * The schema isolate: one worker that imports every handler's schema module (the handler's
 * definition without the isolate bootstrap) and validates readings for ingest. Handler code
 * evaluates here only at module level; `handle` never runs here, and nothing here runs in the host.
 */
import { toErrorData } from "../errors.ts";
import { hostPort } from "../runtime/isolate_port.ts";
import type { HostToValidator, ReadingIssue, ValidatorToHost } from "../sandbox/protocol.ts";
import { collectIssues, describeSchema } from "./plan.ts";

type _Validate = (v: unknown) => unknown;

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
        // A data-only schema is described, so the host can check its readings itself.
        let plan;
        try {
          plan = std ? describeSchema(mod.default!.schema) : undefined;
        } catch {
          plan = undefined;
        }
        send({ type: "loaded", key: m.key, ...(plan ? { plan } : {}) });
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
  const checks = keys.map((key) => {
    const validate = schemas.get(key);
    // Never "valid" for a schema this isolate does not hold: the host answers 503 and the sensor retries.
    if (!validate) throw Object.assign(new Error(`The schema ${key} is not loaded in the schema isolate yet`), { name: "SchemaNotLoadedError" });
    return validate;
  });
  return await collectIssues(checks, readings);
}
