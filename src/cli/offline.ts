/**
 * A handler built as the host builds it and run in its real tier (a worker, or QuickJS in
 * WebAssembly) with no broker: what `outpost test` and `outpost replay` run. Outputs are captured,
 * never stored; the outcome is the one the host would act on.
 * @module
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { isPublishSubject } from "../broker/subjects.ts";
import { buildHandler, buildValidator, type BuiltHandler } from "../bundler/bundle.ts";
import { decodeCbor, DEFAULT_CBOR_LIMITS, encodeCbor } from "../codec/cbor.ts";
import { ConfigError, toErrorData, type ErrorData } from "../errors.ts";
import { decodeBody, MEDIA_TYPES } from "../ingest/decode.ts";
import { HandlerError, type Isolate } from "../sandbox/isolate.ts";
import { selectIsolate } from "../sandbox/select.ts";
import { mapErrorData } from "../sandbox/source_map.ts";
import { Validator } from "../schemas/validator.ts";
import { isTopic, type HandlerInfo } from "../sdk/definition.ts";
import { judgeFailure, type Outcome } from "../sdk/testing.ts";
import { createLogger } from "../util/log.ts";
import { UsageError } from "./flags.ts";

/** What one reading did in a handler. */
export interface OfflineRun {
  issues: { path: string; message: string }[];
  published: { subject: string; value: unknown }[];
  emitted: { topic: string; value: unknown; delayMs?: number }[];
  logs: { level: string; message: string }[];
  outcome: Outcome;
  error?: ErrorData;
  retryInMs?: number;
}

/** A reading to run: where it came from, its value and its stored bytes. */
export interface OfflineReading {
  source: string;
  value: unknown;
  raw: Uint8Array;
}

/** What `--json` prints of runs: bigints as `5n`, byte strings by their length. */
export function jsonOut(v: unknown): string {
  return `${JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Uint8Array ? { bytes: x.length } : x), 2)}\n`;
}

/** The media type of a readings file, from its name. */
export function readingsMediaType(file: string): string {
  const f = file.toLowerCase();
  if (/\.senml\.json$|\.senml$/.test(f)) return MEDIA_TYPES.senmlJson;
  if (/\.senml\.cbor$/.test(f)) return MEDIA_TYPES.senmlCbor;
  if (f.endsWith(".json")) return MEDIA_TYPES.json;
  // A .cbor file may hold one item or many (what `outpost record export` writes): a sequence.
  if (f.endsWith(".cborseq") || f.endsWith(".cbor-seq") || f.endsWith(".cbors") || f.endsWith(".cbor")) return MEDIA_TYPES.cborSeq;
  throw new UsageError(`${file}: cannot tell its encoding from the name: use .json (one reading or an array), .cbor or .cborseq (one CBOR item or a sequence), .senml.json or .senml.cbor (a SenML pack)`);
}

/** Readings files, read (and checked) before anything is built. */
export class ReadingFiles {
  #inputs: { file: string; type: string; bytes: Uint8Array }[] = [];

  static async read(files: string[]): Promise<ReadingFiles> {
    const r = new ReadingFiles();
    for (const file of files) {
      const type = readingsMediaType(file);
      try {
        r.#inputs.push({ file, type, bytes: await readFile(file) });
      } catch (e) {
        throw new ConfigError(`Cannot read ${file}: ${(e as Error).message}`);
      }
    }
    r.decode(undefined);
    return r;
  }

  /** Bytes received otherwise (a running host's recording), as one CBOR sequence. */
  static fromBytes(name: string, bytes: Uint8Array): ReadingFiles {
    const r = new ReadingFiles();
    r.#inputs.push({ file: name, type: MEDIA_TYPES.cborSeq, bytes });
    return r;
  }

  /** Every reading, decoded as ingest would for a handler (SenML by its `senml`). */
  decode(senml: "records" | "pack" | undefined): OfflineReading[] {
    return this.#inputs.flatMap(({ file, type, bytes }) => {
      let decoded;
      try {
        decoded = decodeBody(type, bytes, DEFAULT_CBOR_LIMITS, { senml });
      } catch (e) {
        throw new ConfigError(`${file}: ${(e as Error).message}`);
      }
      return decoded.readings.map((value, i) => ({
        source: decoded.readings.length > 1 ? `${basename(file)}#${i}` : basename(file),
        value,
        raw: decoded.raw?.[i] ?? encodeCbor(value),
      }));
    });
  }
}

/** One handler file, loaded in its tier with its schema, ready to run readings. */
export class OfflineHandler {
  readonly built: BuiltHandler;
  readonly info: HandlerInfo;
  #dir: string;
  #make: () => Isolate;
  #iso: Isolate;
  #validator: Validator | undefined;
  /** Where the isolate's outputs and logs go: the run in progress. */
  #setCurrent: (r: OfflineRun | undefined) => void;

  private constructor(dir: string, built: BuiltHandler, info: HandlerInfo, make: () => Isolate, iso: Isolate, validator: Validator | undefined, setCurrent: (r: OfflineRun | undefined) => void) {
    this.#dir = dir;
    this.built = built;
    this.info = info;
    this.#make = make;
    this.#iso = iso;
    this.#validator = validator;
    this.#setCurrent = setCurrent;
  }

  /**
   * Build and load a handler file.
   * @param wasm run it in the wasm tier whatever it asks (`--isolation wasm`)
   */
  static async open(file: string, wasm: boolean): Promise<OfflineHandler> {
    const dir = await mkdtemp(join(tmpdir(), "outpost-offline-"));
    const quiet = createLogger("error", () => {}, "offline");
    let current: OfflineRun | undefined;
    try {
      const built = await buildHandler(file, join(dir, "build"));
      const make = () => selectIsolate(built, undefined, {
        name: built.name,
        url: built.handlerUrl,
        onLog: (level, message) => current?.logs.push({ level, message }),
        onCall: async (op, subject, data, opts) => {
          if (op === "publish" && !isPublishSubject(subject)) throw new TypeError(`ctx.publish: invalid subject ${JSON.stringify(subject)} (dot-separated tokens, no wildcards)`);
          if (op === "emit" && !isTopic(subject)) throw new TypeError(`ctx.emit: invalid topic ${JSON.stringify(subject)}`);
          const value = decodeCbor(data);
          if (op === "publish") current?.published.push({ subject, value });
          else current?.emitted.push(opts?.delayMs === undefined ? { topic: subject, value } : { topic: subject, value, delayMs: opts.delayMs });
        },
        onCrash: () => {},
      }, wasm);
      const iso = make();
      const info = await iso.start();
      let validator: Validator | undefined;
      if (info.hasSchema) {
        validator = new Validator(await buildValidator(join(dir, "build")), quiet);
        await validator.start();
        if (info.isolation === "wasm") await validator.loadWasm(built.name, built.guestUrl, info);
        else await validator.load(built.name, built.schemaUrl);
      }
      return new OfflineHandler(dir, built, info, make, iso, validator, (r) => (current = r));
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** The topic-like subject a reading is handled under. */
  get subject(): string {
    return this.info.subjects[0]!.replace(/\.>$/, ".test").replace(/\*/g, "test");
  }

  /** Run one reading as delivery number `attempt`. */
  async run(r: OfflineReading, seq: number, attempt: number): Promise<OfflineRun> {
    const run: OfflineRun = { issues: [], published: [], emitted: [], logs: [], outcome: "ack" };
    this.#setCurrent(run);
    try {
      if (this.#validator) run.issues = (await this.#validator.validate([this.built.name], [r.value])).map((x) => ({ path: x.path, message: x.message }));
      if (run.issues.length) {
        run.outcome = "rejected";
        return run;
      }
      try {
        await this.#iso.invoke({ subject: this.subject, seq, attempt, data: r.raw }, this.info.timeoutMs);
      } catch (e) {
        run.error = e instanceof HandlerError ? await mapErrorData(e.data, this.built.bundleFiles ?? []) : toErrorData(e);
        Object.assign(run, judgeFailure(e instanceof HandlerError && e.permanent, attempt, this.info));
        if (!(e instanceof HandlerError)) {
          // A timeout or a crash: the isolate is gone; as in the host, the next reading gets a new one.
          await this.#iso.terminate().catch(() => {});
          this.#iso = this.#make();
          await this.#iso.start();
        }
      }
      return run;
    } finally {
      this.#setCurrent(undefined);
    }
  }

  async close(): Promise<void> {
    await this.#iso.terminate().catch(() => {});
    await this.#validator?.stop().catch(() => {});
    await rm(this.#dir, { recursive: true, force: true });
  }
}
