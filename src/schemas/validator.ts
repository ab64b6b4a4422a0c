import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { ErrorData } from "../errors.ts";
import type { Logger } from "../util/log.ts";
import { spawnWorker, type WorkerHandle } from "../runtime/worker.ts";
import type { HostToValidator, ReadingIssue, ValidatorToHost } from "../sandbox/protocol.ts";
import { WasmSchemas, WasmSchemaUnavailableError } from "./quickjs.ts";
import { collectIssues, compilePlan, type HostCheck } from "./plan.ts";

/** The validator did not answer in time or died; ingest answers 503. */
export class ValidatorUnavailableError extends Error {
  override name = "ValidatorUnavailableError";
}

/**
 * Host side of the schema isolate: loads each handler's schema module into one worker and
 * validates batches of readings there, so no handler code runs in the host process.
 */
export class Validator {
  #url: URL;
  #log: Logger;
  #w: WorkerHandle | undefined;
  #modules = new Map<string, URL>();
  #waiting = new Map<number, { resolve(i: ReadingIssue[]): void; reject(e: Error): void; timer: ReturnType<typeof setTimeout> }>();
  #loads = new Map<string, { resolve(): void; reject(e: Error): void }>();
  #next = 1;
  #timeoutMs: number;
  #queue: { id: number; keys: string[]; readings: unknown[] }[] = [];
  #batchOut = false;
  /** False while a (re)started isolate is still importing the schemas: nothing is sent to it meanwhile. */
  #ready = false;
  #wasm = new WasmSchemas();
  /** Data-only schemas, rebuilt here from the isolate's description: checked without the round trip. */
  #inHost = new Map<string, HostCheck>();

  constructor(url: URL, log: Logger, timeoutMs = 2_000) {
    this.#url = url;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  /** Start (or restart) the worker and load every known schema module into it. */
  async start(): Promise<void> {
    // Deno: the worker may read the bundle directory (to import schema modules) and nothing else.
    const w = await spawnWorker(this.#url, { name: "outpost-schemas", permissions: { read: [dirname(fileURLToPath(this.#url))] } });
    this.#ready = false;
    this.#w = w;
    w.onExit((reason) => {
      if (this.#w !== w) return;
      this.#log.error(`schema isolate died (${reason}); restarting it`);
      this.#failAll(new ValidatorUnavailableError(`Schema isolate died: ${reason}`));
      this.#w = undefined;
      void this.start().catch((e: Error) => this.#log.error(`schema isolate restart failed: ${e.message}`));
    });
    w.onMessage((raw) => {
      const m = raw as ValidatorToHost;
      if (m.type === "loaded") {
        const l = this.#loads.get(m.key);
        this.#loads.delete(m.key);
        const check = !m.error && m.plan !== undefined && this.#modules.has(m.key) ? compilePlan(m.plan) : undefined;
        if (check) this.#inHost.set(m.key, check);
        else this.#inHost.delete(m.key);
        if (m.error) l?.reject(new Error(`${m.error.name}: ${m.error.message}`));
        else l?.resolve();
      } else {
        this.#batchOut = false;
        for (const r of m.results) {
          const p = this.#waiting.get(r.id);
          if (!p) continue;
          this.#waiting.delete(r.id);
          clearTimeout(p.timer);
          if (r.error?.name === "SchemaNotLoadedError") p.reject(new ValidatorUnavailableError(r.error.message));
          else if (r.error) p.reject(_schemaError(r.error));
          else p.resolve(r.issues);
        }
        this.#flush();
      }
    });
    try {
      for (const [key, url] of this.#modules) await this.#load(key, url);
    } finally {
      if (this.#w === w) {
        this.#ready = true;
        this.#flush();
      }
    }
  }

  /**
   * Import a handler's schema module under `key`.
   * @throws Error when the module cannot be imported in the schema isolate
   */
  async load(key: string, url: URL): Promise<void> {
    this.#modules.set(key, url);
    await this.#load(key, url);
  }

  /**
   * Load a wasm-tier handler's schema: it runs in a QuickJS sandbox of its own, never in this worker.
   * @param guestUrl the handler's sandbox bundle (`BuiltHandler.guestUrl`)
   * @param limits the handler's memoryMb, stackKb and cpuMs
   */
  async loadWasm(key: string, guestUrl: URL, limits: { memoryMb: number; stackKb?: number | undefined; cpuMs?: number | undefined }): Promise<void> {
    await this.#wasm.load(key, guestUrl, limits);
  }

  /** Whether readings of schema `key` are checked in the host (a data-only schema). */
  checkedInHost(key: string): boolean {
    return this.#inHost.has(key);
  }

  /** Forget a schema. */
  unload(key: string): void {
    this.#wasm.unload(key);
    this.#modules.delete(key);
    this.#inHost.delete(key);
    this.#post({ type: "unload", key });
  }

  #load(key: string, url: URL): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#loads.set(key, { resolve, reject });
      this.#post({ type: "load", key, url: url.href });
    });
  }

  /**
   * Validate readings against the schemas loaded under `keys` (all must pass).
   * @returns the issues, empty when every reading is valid
   * @throws ValidatorUnavailableError when the schema isolate does not answer in time
   */
  async validate(keys: string[], readings: unknown[]): Promise<ReadingIssue[]> {
    const wasmKeys = keys.filter((k) => this.#wasm.has(k));
    if (!wasmKeys.length) return await this.#validate(keys, readings);
    const workerKeys = keys.filter((k) => !this.#wasm.has(k));
    let wasmIssues: ReadingIssue[];
    try {
      wasmIssues = await this.#wasm.validate(wasmKeys, readings);
    } catch (e) {
      if (e instanceof WasmSchemaUnavailableError) throw new ValidatorUnavailableError(e.message);
      throw e;
    }
    const all = [...(workerKeys.length ? await this.#validate(workerKeys, readings) : []), ...wasmIssues];
    // Several handlers of one topic often share a schema: report each problem once.
    const seen = new Set<string>();
    return all.filter((i) => {
      const id = `${i.index}\u0000${i.path}\u0000${i.message}`;
      return !seen.has(id) && !!seen.add(id);
    });
  }

  #validate(keys: string[], readings: unknown[]): Promise<ReadingIssue[]> {
    const inHost = keys.map((k) => this.#inHost.get(k));
    if (inHost.every((c) => c !== undefined)) return collectIssues(inHost as HostCheck[], readings);
    if (!this.#w) return Promise.reject(new ValidatorUnavailableError("Schema isolate is restarting"));
    const id = this.#next++;
    return new Promise<ReadingIssue[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new ValidatorUnavailableError(`Schema validation did not finish within ${this.#timeoutMs} ms`));
        // A schema stuck in a loop blocks every topic: replace the isolate.
        const w = this.#w;
        this.#w = undefined;
        this.#failAll(new ValidatorUnavailableError(`Schema validation did not finish within ${this.#timeoutMs} ms`));
        void w?.terminate().then(() => this.start());
      }, this.#timeoutMs);
      this.#waiting.set(id, { resolve, reject, timer });
      this.#queue.push({ id, keys, readings });
      this.#flush();
    });
  }

  /**
   * One batch in flight at a time: requests that arrive meanwhile travel together in the next
   * one, so under load many requests share a round trip, and an idle host adds no wait.
   */
  #flush(): void {
    if (this.#batchOut || !this.#queue.length || !this.#w || !this.#ready) return;
    const items = this.#queue.filter((i) => this.#waiting.has(i.id));
    this.#queue = [];
    if (!items.length) return;
    try {
      this.#post({ type: "validate", items });
      this.#batchOut = true;
    } catch (e) {
      // Readings the structured clone refuses (ingest bounds depth, so this is a last guard): the
      // requests of this batch fail, the isolate and every other request carry on.
      for (const i of items) this.#reject(i.id, new ValidatorUnavailableError(`Cannot pass readings to the schema isolate: ${(e as Error).message}`));
      queueMicrotask(() => this.#flush());
    }
  }

  #reject(id: number, e: Error): void {
    const p = this.#waiting.get(id);
    if (!p) return;
    this.#waiting.delete(id);
    clearTimeout(p.timer);
    p.reject(e);
  }

  async stop(): Promise<void> {
    this.#wasm.stop();
    const w = this.#w;
    this.#w = undefined;
    this.#ready = false;
    this.#failAll(new ValidatorUnavailableError("Schema isolate stopped"));
    await w?.terminate();
  }

  #post(m: HostToValidator): void {
    this.#w?.post(m);
  }

  #failAll(e: Error): void {
    this.#queue = [];
    this.#batchOut = false;
    for (const [id, p] of this.#waiting) {
      clearTimeout(p.timer);
      p.reject(e);
      this.#waiting.delete(id);
    }
  }
}

function _schemaError(e: ErrorData): Error {
  return Object.assign(new Error(`Schema threw ${e.name}: ${e.message}`), { name: "SchemaError" });
}
