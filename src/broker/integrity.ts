import { readFile, rename, writeFile } from "node:fs/promises";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../util/log.ts";

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
  /** The stream with interest retention (INGEST), checked for messages no consumer will deliver. */
  interestStream?: string;
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

  /** Store read errors nats-server reported since start. */
  readErrors = 0;

  /**
   * nats-server said it cannot read a stored message (damaged bytes in a block): the counts at
   * start could not show it, and a consumer that reaches the message stops there.
   */
  reportReadError(line: string): void {
    this.readErrors++;
    if (this.#problems.some((p) => p.stream === "?")) return;
    const p = { stream: "?", lost: 0, message: `nats-server cannot read a stored message (${line}); a handler whose consumer reaches it stops there` };
    this.#problems.push(p);
    this.#o.log.error(`STORE INTEGRITY: ${p.message}. /readyz answers 503 until an operator acknowledges it (POST /v1/store/acknowledge)`);
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

  /** Write the marks now and then every `everyMs` (default 10 s), and look for orphaned messages. */
  start(everyMs = 10_000): void {
    void this.#write(false);
    this.#timer = setInterval(() => {
      void this.#write(false);
      void this.#orphans().catch(() => {});
    }, everyMs);
  }

  #quiet: { stream: string; first: number; last: number; messages: number; orphans: number } | undefined;

  /**
   * Under interest retention every stored message is pending or unacknowledged for some consumer,
   * or it is gone. Damaged bytes in a block make nats-server 2.9.10 step its consumers past the
   * messages it cannot read while the stream still counts them (measured). So: more messages than
   * all consumers still owe, twice in a row with the stream unchanged, is damage.
   */
  async #orphans(): Promise<void> {
    const name = this.#o.interestStream;
    if (!name || this.#problems.some((p) => p.stream === name)) return;
    const jsm = this.#o.jsm;
    const s = (await jsm.streams.info(name)).state;
    let owed = 0;
    for await (const c of jsm.consumers.list(name)) owed += c.num_pending + c.num_ack_pending;
    const after = (await jsm.streams.info(name)).state;
    const orphans = s.messages - owed;
    const same = after.last_seq === s.last_seq && after.first_seq === s.first_seq && after.messages === s.messages;
    const now = { stream: name, first: s.first_seq, last: s.last_seq, messages: s.messages, orphans };
    const prev = this.#quiet;
    this.#quiet = same && orphans > 0 ? now : undefined;
    if (!same || orphans <= 0 || !prev || prev.last !== now.last || prev.messages !== now.messages) return;
    const p = {
      stream: name,
      lost: orphans,
      message: `stream ${name} holds ${s.messages} messages but its consumers owe only ${owed}: ${orphans} stored messages ` +
        "cannot be delivered (damaged blocks nats-server steps over)",
    };
    this.#problems.push(p);
    this.#o.log.error(`STORE INTEGRITY: ${p.message}. /readyz answers 503 until an operator acknowledges it (POST /v1/store/acknowledge)`);
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
