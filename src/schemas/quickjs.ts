import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { encodeCbor } from "../codec/cbor.ts";
import { WASM_DEFAULTS } from "../sdk/definition.ts";
import type { ReadingIssue } from "../sandbox/protocol.ts";
import { GuestError, WASM_LOAD_CPU_MS, WasmSandbox, type SandboxHooks, type SandboxLimits } from "../sandbox/quickjs/sandbox.ts";

/** A wasm-tier schema did not answer (CPU budget, trap, out of memory); ingest answers 503. */
export class WasmSchemaUnavailableError extends Error {
  override name = "WasmSchemaUnavailableError";
}

/** A wasm-tier schema threw instead of returning issues. */
export class WasmSchemaError extends Error {
  override name = "SchemaError";
}


type _Entry = { code: string; limits: SandboxLimits & { cpuMs: number }; sb: WasmSandbox | undefined };

/**
 * Ingest validation for wasm-tier handlers: their code must not run in the shared V8 schema
 * isolate, so each one's schema runs in a sandbox of its own (QuickJS, same limits as the
 * handler), separate from the sandbox that runs `handle`. A sandbox that dies is rebuilt on the
 * next request.
 */
export class WasmSchemas {
  #entries = new Map<string, _Entry>();

  /** Whether `key` is a wasm-tier schema. */
  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /**
   * Load a handler's sandbox bundle under `key`.
   * @param limits the handler's memoryMb, stackKb and cpuMs
   * @throws Error when the bundle does not load in the sandbox
   */
  async load(key: string, guestUrl: URL, limits: { memoryMb: number; stackKb?: number | undefined; cpuMs?: number | undefined }): Promise<void> {
    const code = await readFile(fileURLToPath(guestUrl), "utf8");
    const e: _Entry = {
      code,
      limits: { memoryMb: limits.memoryMb, stackKb: limits.stackKb ?? WASM_DEFAULTS.stackKb, cpuMs: limits.cpuMs ?? WASM_DEFAULTS.cpuMs },
      sb: undefined,
    };
    e.sb = await this.#create(key, e);
    this.#entries.get(key)?.sb?.dispose();
    this.#entries.set(key, e);
  }

  /** Forget a schema. */
  unload(key: string): void {
    this.#entries.get(key)?.sb?.dispose();
    this.#entries.delete(key);
  }

  /**
   * Validate readings against the wasm-tier schemas under `keys`.
   * @returns the issues, empty when every reading is valid
   * @throws WasmSchemaUnavailableError, WasmSchemaError
   */
  async validate(keys: string[], readings: unknown[]): Promise<ReadingIssue[]> {
    const bytes = encodeCbor(readings);
    const issues: ReadingIssue[] = [];
    for (const key of keys) {
      const e = this.#entries.get(key);
      if (!e) continue;
      e.sb ??= await this.#create(key, e);
      try {
        issues.push(...(JSON.parse(e.sb.call("validate", bytes) as string) as ReadingIssue[]));
      } catch (err) {
        if (err instanceof GuestError) throw new WasmSchemaError(`Schema threw ${err.message}`);
        e.sb.dispose();
        e.sb = undefined;
        throw new WasmSchemaUnavailableError(`Schema of ${key.split("@")[0]} failed in its sandbox (${(err as Error).message}); it is rebuilt`);
      }
    }
    return issues;
  }

  /** Free every sandbox. */
  stop(): void {
    for (const e of this.#entries.values()) e.sb?.dispose();
    this.#entries.clear();
  }

  async #create(key: string, e: _Entry): Promise<WasmSandbox> {
    let loading = true;
    const hooks: SandboxHooks = {
      call: () => Promise.reject(new TypeError("ctx is not available while validating")),
      log: () => {},
      settle: () => {},
      // Module evaluation gets the load budget of the handler's own sandbox; each validation gets cpuMs.
      budgetMs: () => (loading ? Math.max(e.limits.cpuMs, WASM_LOAD_CPU_MS) : e.limits.cpuMs),
      charge: () => {},
      fatal: () => {},
    };
    try {
      return await WasmSandbox.create(e.code, `${key.split("@")[0]}.schema.js`, e.limits, hooks);
    } finally {
      loading = false;
    }
  }
}
