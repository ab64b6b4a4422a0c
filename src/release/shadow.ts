/**
 * Shadow runs: a candidate version of a handler beside the active one on the live device. It gets
 * a copy of every reading the active version gets (a durable consumer of its own, from the moment
 * it starts), its outputs are captured and compared with the active version's outputs for the
 * same reading, never stored, and its failures never reach the DLQ. It stops by itself after a
 * number of readings or a time.
 * @module
 */
import type { RunnerTap } from "../dispatch/runner.ts";

/** When a shadow run ends by itself. */
export interface ShadowLimits {
  /** Readings compared. */
  readings: number;
  /** Milliseconds since it started. */
  ms: number;
}

/** How one reading compared. */
export type ShadowVerdict = "agreed" | "different output" | "new failure" | "fixed failure" | "both failed";

interface _Side {
  outputs: Uint8Array[];
  outcome?: { ok: boolean; error?: string; ms: number };
}

const _MAX_PENDING = 10_000;
const _te = new TextEncoder();
const _td = new TextDecoder();
const _MAX_EXAMPLES = 5;

/** What `/v1/handlers` and the dashboard show of a shadow run. */
export interface ShadowView {
  candidate: string;
  state: "running" | "finished";
  startedAt: string;
  endedAt: string | null;
  endReason: string | null;
  limits: ShadowLimits;
  compared: number;
  counts: Record<ShadowVerdict, number>;
  /** Share of compared readings on which both agreed (0..1), null before the first. */
  agreement: number | null;
  /** Median handling time of each side, over the compared readings. */
  latencyMs: { active: number | null; shadow: number | null };
  /** The first few readings that did not agree, by INGEST sequence. */
  examples: { seq: number; verdict: ShadowVerdict; active: string; shadow: string }[];
}

/**
 * The comparison of one shadow run: a tap for the active runner and one for the shadow runner;
 * each reading is judged once both sides finished their first attempt.
 */
export class ShadowSession {
  readonly candidate: string;
  readonly limits: ShadowLimits;
  #started = Date.now();
  #ended: { at: number; reason: string } | undefined;
  #pending = new Map<number, { active: _Side; shadow: _Side }>();
  #counts: Record<ShadowVerdict, number> = { agreed: 0, "different output": 0, "new failure": 0, "fixed failure": 0, "both failed": 0 };
  #latency = { active: [] as number[], shadow: [] as number[] };
  #examples: ShadowView["examples"] = [];
  #onJudged: (v: ShadowVerdict) => void;
  #onLimit: (reason: string) => void;
  #timer: ReturnType<typeof setTimeout>;

  constructor(candidate: string, limits: ShadowLimits, hooks: { judged(v: ShadowVerdict): void; limit(reason: string): void }) {
    this.candidate = candidate;
    this.limits = limits;
    this.#onJudged = hooks.judged;
    this.#onLimit = hooks.limit;
    this.#timer = setTimeout(() => this.#limit(`ran for ${limits.ms} ms`), limits.ms);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Taps for the two runners. */
  taps(): { active: RunnerTap; shadow: RunnerTap } {
    return { active: this.#tap("active"), shadow: this.#tap("shadow") };
  }

  get compared(): number {
    return Object.values(this.#counts).reduce((a, b) => a + b, 0);
  }

  /** The run ended (by a limit, or stopped): no more comparisons. */
  end(reason: string): void {
    if (this.#ended) return;
    clearTimeout(this.#timer);
    this.#ended = { at: Date.now(), reason };
    this.#pending.clear();
  }

  get ended(): boolean {
    return this.#ended !== undefined;
  }

  view(): ShadowView {
    const n = this.compared;
    return {
      candidate: this.candidate,
      state: this.#ended ? "finished" : "running",
      startedAt: new Date(this.#started).toISOString(),
      endedAt: this.#ended ? new Date(this.#ended.at).toISOString() : null,
      endReason: this.#ended?.reason ?? null,
      limits: this.limits,
      compared: n,
      counts: { ...this.#counts },
      agreement: n ? this.#counts.agreed / n : null,
      latencyMs: { active: _median(this.#latency.active), shadow: _median(this.#latency.shadow) },
      examples: [...this.#examples],
    };
  }

  #tap(side: "active" | "shadow"): RunnerTap {
    return {
      output: (seq, op, subject, data) => {
        if (this.#ended) return;
        const p = this.#entry(seq);
        // The subject is part of the output: the same value to another subject is a difference.
        const head = _te.encode(`${op} ${subject}\n`);
        const out = new Uint8Array(head.length + data.length);
        out.set(head);
        out.set(data, head.length);
        p[side].outputs.push(out);
      },
      done: (seq, outcome) => {
        if (this.#ended) return;
        const p = this.#entry(seq);
        p[side].outcome = outcome;
        if (p.active.outcome && p.shadow.outcome) this.#judge(seq, p);
      },
    };
  }

  #entry(seq: number): { active: _Side; shadow: _Side } {
    let p = this.#pending.get(seq);
    if (!p) {
      if (this.#pending.size >= _MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value!);
      p = { active: { outputs: [] }, shadow: { outputs: [] } };
      this.#pending.set(seq, p);
    }
    return p;
  }

  #judge(seq: number, p: { active: _Side; shadow: _Side }): void {
    this.#pending.delete(seq);
    const a = p.active.outcome!;
    const s = p.shadow.outcome!;
    const v: ShadowVerdict = a.ok && !s.ok ? "new failure" : !a.ok && s.ok ? "fixed failure" : !a.ok && !s.ok ? "both failed"
      : _same(p.active.outputs, p.shadow.outputs) ? "agreed" : "different output";
    this.#counts[v]++;
    this.#latency.active.push(a.ms);
    this.#latency.shadow.push(s.ms);
    if (this.#latency.active.length > 10_000) (this.#latency.active.shift(), this.#latency.shadow.shift());
    if (v !== "agreed" && this.#examples.length < _MAX_EXAMPLES) {
      this.#examples.push({ seq, verdict: v, active: _describe(p.active), shadow: _describe(p.shadow) });
    }
    this.#onJudged(v);
    if (this.compared >= this.limits.readings) this.#limit(`compared ${this.compared} readings`);
  }

  #limit(reason: string): void {
    if (this.#ended) return;
    this.end(reason);
    this.#onLimit(reason);
  }
}

function _same(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((x, i) => x.length === b[i]!.length && x.every((y, j) => y === b[i]![j]));
}

function _describe(s: _Side): string {
  if (!s.outcome?.ok) return `failed: ${s.outcome?.error ?? "?"}`;
  return s.outputs.length ? `${s.outputs.length} output(s): ${s.outputs.map((o) => _td.decode(o.subarray(0, o.indexOf(10)))).join(", ")}` : "acked, no output";
}

function _median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.floor(s.length / 2)]! * 1000) / 1000;
}
