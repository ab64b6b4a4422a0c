import { readFile, rename, writeFile } from "node:fs/promises";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../log.ts";

/** What Outpost remembers of one stream, outside the stream. */
export interface StreamMark {
  lastSeq: number;
  messages: number;
  /** Written on a clean stop (nothing consumed since), not by the periodic write. */
  clean: boolean;
  at: string;
}

/** A stream found smaller than Outpost left it. */
export interface IntegrityProblem {
  stream: string;
  /** Messages known to be missing (at least). */
  lost: number;
  message: string;
}

/** Options of {@link StoreIntegrity}. */
export interface StoreIntegrityOptions {
  jsm: JetStreamManager;
  /** The state file, e.g. `<data-dir>/store-marks.json`. */
  file: string;
  streams: readonly string[];
  /**
   * Streams whose message count must survive a clean stop unchanged: nothing but this host
   * consumes them and nothing ages out of them (INGEST of an embedded server).
   */
  countStreams: readonly string[];
  log: Logger;
}

/**
 * Remembers each stream's last sequence (and, on a clean stop, its message count) in a small
 * file, and at start holds JetStream's state against it: a stream whose sequence went back, or
 * that lost messages while the host was stopped, is a loud error, never a silent start.
 * nats-server 2.9.10 starts on a truncated or corrupted block file and drops what it cannot
 * read without saying so (measured: see docs), so this is the only place the loss shows.
 */
export class StoreIntegrity {
  #o: StoreIntegrityOptions;
  #problems: IntegrityProblem[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(o: StoreIntegrityOptions) {
    this.#o = o;
  }

  /** Problems found at start and not acknowledged yet. */
  problems(): IntegrityProblem[] {
    return [...this.#problems];
  }

  /** The operator has seen the problems: `/readyz` is ready again (they stay in the log). */
  acknowledge(): IntegrityProblem[] {
    const was = this.#problems;
    this.#problems = [];
    if (was.length) this.#o.log.warn(`store integrity problems acknowledged: ${was.map((p) => p.message).join("; ")}`);
    return was;
  }

  /** Compare the streams with the marks left by the last run; returns (and keeps) the problems. */
  async check(): Promise<IntegrityProblem[]> {
    let marks: Record<string, StreamMark> = {};
    try {
      marks = JSON.parse(await readFile(this.#o.file, "utf8")) as Record<string, StreamMark>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.#o.log.warn(`cannot read ${this.#o.file}: ${(e as Error).message}`);
      return [];
    }
    for (const name of this.#o.streams) {
      const mark = marks[name];
      if (!mark) continue;
      const now = await this.#o.jsm.streams.info(name).then((i) => i.state);
      if (now.last_seq < mark.lastSeq) {
        this.#problems.push({
          stream: name,
          lost: mark.lastSeq - now.last_seq,
          message: `stream ${name} went back from sequence ${mark.lastSeq} to ${now.last_seq} (${mark.at}): at least ` +
            `${mark.lastSeq - now.last_seq} stored messages are gone; the JetStream store was damaged or replaced`,
        });
      } else if (mark.clean && this.#o.countStreams.includes(name) && now.last_seq === mark.lastSeq && now.messages < mark.messages) {
        this.#problems.push({
          stream: name,
          lost: mark.messages - now.messages,
          message: `stream ${name} holds ${now.messages} messages, ${mark.messages - now.messages} fewer than at the clean stop of ` +
            `${mark.at}: the JetStream store was damaged while the host was stopped`,
        });
      }
    }
    for (const p of this.#problems) this.#o.log.error(`STORE INTEGRITY: ${p.message}. /readyz answers 503 until an operator acknowledges it (POST /v1/store/acknowledge)`);
    return this.problems();
  }

  /** Write the marks now and then every `everyMs` (default 10 s). */
  start(everyMs = 10_000): void {
    void this.#write(false);
    this.#timer = setInterval(() => void this.#write(false), everyMs);
  }

  /** Stop the periodic write and write clean marks (call after the handlers stopped). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#write(true);
  }

  #write(clean: boolean): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      const marks: Record<string, StreamMark> = {};
      try {
        for (const name of this.#o.streams) {
          const s = (await this.#o.jsm.streams.info(name)).state;
          marks[name] = { lastSeq: s.last_seq, messages: s.messages, clean, at: new Date().toISOString() };
        }
        const tmp = `${this.#o.file}.tmp`;
        await writeFile(tmp, JSON.stringify(marks, null, 1));
        await rename(tmp, this.#o.file);
      } catch (e) {
        // The broker is down or the disk full: the previous marks stay, and they are still true.
        this.#o.log.debug(`cannot write store marks: ${(e as Error).message}`);
      }
    });
    return this.#writing;
  }
}
