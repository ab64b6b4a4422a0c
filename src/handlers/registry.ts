import { readdir } from "node:fs/promises";
import { extname, join, resolve } from "node:path";
import type { Broker } from "../broker/connect.ts";
import { HandlerRunner, type HandlerCounts, type HandlerStatus } from "../dispatch/runner.ts";
import type { Logger } from "../log.ts";
import type { Validator } from "../sandbox/validator.ts";
import { decodeCbor, scanCbor } from "../codec/cbor.ts";
import { buildHandler } from "./build.ts";
import { isTopic } from "./definition.ts";

/** File extensions loaded as handlers; files starting with `_` or `.` are helpers, not handlers. */
export const HANDLER_EXTENSIONS = [".ts", ".js", ".mjs", ".mts"] as const;

/** One row of `GET /v1/handlers`. */
export interface HandlerView {
  name: string;
  file: string;
  version: string | null;
  status: HandlerStatus;
  topic: string | null;
  subjects: string[];
  isolation: "worker";
  consumer: string | null;
  inFlight: number;
  counts: HandlerCounts;
  limits: { timeoutMs: number; concurrency: number; maxAttempts: number; memoryMb: number | null; memoryEnforced: boolean } | null;
  sandboxed: boolean;
  loadedAt: string | null;
  lastError: string | null;
}

/** Where a topic's readings go and what they must satisfy. */
export interface TopicRoute {
  /** Keys of the schemas in the schema isolate (one per consuming handler that has a schema). */
  schemaKeys: string[];
  /** Field that gives each reading of a batch its idempotency key. */
  idField: string | undefined;
}

interface _Failed {
  name: string;
  file: string;
  error: string;
}

/**
 * The handlers of a directory: builds each, loads it in its isolate, registers its schema with
 * the schema isolate and starts its consumer. One broken handler never stops the others.
 */
export class HandlerRegistry {
  #dir: string;
  #bundleDir: string;
  #broker: Broker;
  #validator: Validator;
  #log: Logger;
  #runners = new Map<string, HandlerRunner>();
  #failed = new Map<string, _Failed>();

  constructor(opts: { dir: string; bundleDir: string; broker: Broker; validator: Validator; log: Logger }) {
    this.#dir = resolve(opts.dir);
    this.#bundleDir = opts.bundleDir;
    this.#broker = opts.broker;
    this.#validator = opts.validator;
    this.#log = opts.log;
  }

  /** Load every handler file in the directory. */
  async loadAll(): Promise<void> {
    let files: string[];
    try {
      files = (await readdir(this.#dir)).filter(isHandlerFile).sort();
    } catch (e) {
      this.#log.warn(`cannot read handler directory ${this.#dir}: ${(e as Error).message}`);
      return;
    }
    if (!files.length) this.#log.warn(`no handlers in ${this.#dir}: ingest knows no topics yet`);
    for (const f of files) await this.load(join(this.#dir, f));
  }

  /** Build and start one handler file; failures are recorded, not thrown. */
  async load(file: string): Promise<void> {
    let runner: HandlerRunner | undefined;
    try {
      const built = await buildHandler(file, this.#bundleDir);
      runner = new HandlerRunner(built, this.#broker, this.#log, (topic, data) => this.#emit(topic, data));
      const info = await runner.load();
      if (info.hasSchema) await this.#validator.load(this.#schemaKey(runner), built.schemaUrl);
      await runner.run();
      this.#runners.set(built.name, runner);
      this.#failed.delete(built.name);
      this.#log.info(
        `loaded handler ${built.name} (${built.hash}) on ${info.subjects.join(", ")}; ` +
          `concurrency ${info.concurrency}, timeout ${info.timeoutMs} ms, ${info.maxAttempts} attempts`,
      );
    } catch (e) {
      await runner?.stop(0).catch(() => {});
      const name = _nameOf(file);
      const error = (e as Error).message;
      this.#failed.set(name, { name, file, error });
      this.#log.error(error);
    }
  }

  /** Stop every handler, letting in-flight messages finish. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#runners.values()].map((r) => r.stop()));
  }

  /** The running handlers. */
  runners(): HandlerRunner[] {
    return [...this.#runners.values()];
  }

  /** Handlers that failed to load. */
  failedCount(): number {
    return this.#failed.size;
  }

  /**
   * What a reading posted to `topic` must satisfy; undefined when no handler consumes it.
   * @param topic the topic of `POST /v1/ingest/:topic`
   */
  route(topic: string): TopicRoute | undefined {
    const subject = `ingest.${topic}`;
    const consumers = this.runners().filter((r) => r.info?.subjects.some((s) => subjectMatches(s, subject)));
    if (!consumers.length) return undefined;
    return {
      schemaKeys: consumers.filter((r) => r.info?.hasSchema).map((r) => this.#schemaKey(r)),
      idField: consumers.map((r) => r.info?.idField).find((f) => f !== undefined),
    };
  }

  /** Topics (or subject patterns) some handler consumes, for error messages. */
  topics(): string[] {
    const t = new Set<string>();
    for (const r of this.runners()) for (const s of r.info?.subjects ?? []) t.add(s.replace(/^ingest\./, ""));
    return [...t].sort();
  }

  /** Every handler, loaded or failed. */
  view(): HandlerView[] {
    const rows: HandlerView[] = this.runners().map((r) => ({
      name: r.built.name,
      file: r.built.file,
      version: r.built.hash,
      status: r.status,
      topic: r.info?.topic ?? null,
      subjects: r.info?.subjects ?? [],
      isolation: "worker",
      consumer: r.durable,
      inFlight: r.inFlight,
      counts: { ...r.counts },
      limits: r.info
        ? {
          timeoutMs: r.info.timeoutMs,
          concurrency: r.info.concurrency,
          maxAttempts: r.info.maxAttempts,
          memoryMb: r.info.memoryMb ?? null,
          memoryEnforced: r.info.memoryMb !== undefined && r.heapLimitEnforced,
        }
        : null,
      sandboxed: r.sandboxed,
      loadedAt: r.loadedAt?.toISOString() ?? null,
      lastError: r.lastError ?? null,
    }));
    for (const f of this.#failed.values()) {
      if (this.#runners.has(f.name)) continue;
      rows.push({
        name: f.name, file: f.file, version: null, status: "failed", topic: null, subjects: [], isolation: "worker",
        consumer: null, inFlight: 0, counts: { acked: 0, failed: 0, retried: 0, deadLettered: 0, crashes: 0 },
        limits: null, sandboxed: false, loadedAt: null, lastError: f.error,
      });
    }
    return rows.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** ctx.emit: the same checks as ingest (a consumed topic, its schemas) before storing. */
  async #emit(topic: string, data: Uint8Array): Promise<void> {
    const route = isTopic(topic) ? this.route(topic) : undefined;
    if (!route) {
      throw new Error(`ctx.emit: no handler consumes topic ${JSON.stringify(topic)}; known topics: ${this.topics().join(", ") || "(none)"}`);
    }
    if (route.schemaKeys.length) {
      scanCbor(data, false); // the bytes come from an isolate: check them like any untrusted CBOR
      const reading = decodeCbor(data);
      const issues = await this.#validator.validate(route.schemaKeys, [reading]);
      const first = issues[0];
      if (first) throw new Error(`ctx.emit: the reading does not match the schema of ${topic}: ${first.path ? `${first.path}: ` : ""}${first.message}`);
    }
    await this.#broker.js.publish(`ingest.${topic}`, data);
  }

  #schemaKey(r: HandlerRunner): string {
    return `${r.built.name}@${r.built.hash}`;
  }
}

/** Whether a file name is loaded as a handler. */
export function isHandlerFile(f: string): boolean {
  return !f.startsWith("_") && !f.startsWith(".") && !f.endsWith(".d.ts") &&
    (HANDLER_EXTENSIONS as readonly string[]).includes(extname(f));
}

/**
 * NATS subject matching with `*` (one token) and `>` (the rest).
 * @param filter a subject filter
 * @param subject a literal subject
 */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length || (f[i] !== "*" && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

function _nameOf(file: string): string {
  const base = file.split("/").pop() ?? file;
  return base.slice(0, base.length - extname(base).length);
}
