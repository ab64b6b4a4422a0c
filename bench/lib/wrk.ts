/** Runs wrk (the closed-loop HTTP load generator from the OS packages) with a POST body. */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

/** What one wrk run measured. */
export interface WrkResult {
  requests: number;
  seconds: number;
  requestsPerSec: number;
  non2xx: number;
  socketErrors: number;
  latencyMs: { p50: number; p90: number; p99: number };
  threads: number;
  connections: number;
}

/** Options of {@link runWrk}. */
export interface WrkOptions {
  url: string;
  body: Uint8Array;
  contentType: string;
  seconds: number;
  connections: number;
  /** wrk threads: 1, so the generator takes one core at most on a small machine. */
  threads?: number;
  /** Where the Lua script is written. */
  dir: string;
  /** Run wrk on these CPUs only (`taskset -c`), e.g. "1". */
  cpus?: string | undefined;
}

/** Run wrk against `url` and parse its report. */
export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const script = join(o.dir, `wrk-${Math.random().toString(36).slice(2)}.lua`);
  // Decimal escapes keep any byte intact in a Lua string literal.
  const body = Array.from(o.body, (b) => `\\${b}`).join("");
  await writeFile(script, `wrk.method = "POST"\nwrk.headers["Content-Type"] = "${o.contentType}"\nwrk.body = "${body}"\n`);
  const threads = o.threads ?? 1;
  const args = [`-t${threads}`, `-c${o.connections}`, `-d${o.seconds}s`, "--latency", "-s", script, o.url];
  const out = await new Promise<string>((res, rej) => {
    const p = o.cpus ? spawn("taskset", ["-c", o.cpus, "wrk", ...args], { stdio: ["ignore", "pipe", "pipe"] }) : spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
    let s = "";
    p.stdout.on("data", (d) => (s += d));
    p.stderr.on("data", (d) => (s += d));
    const t = setTimeout(() => p.kill("SIGKILL"), (o.seconds + 30) * 1_000);
    p.once("error", rej);
    p.once("exit", (code) => {
      clearTimeout(t);
      if (code === 0) res(s);
      else rej(new Error(`wrk exited with ${code}: ${s}`));
    });
  });
  return parseWrk(out, threads, o.connections);
}

/** Parse wrk's text report. */
export function parseWrk(out: string, threads: number, connections: number): WrkResult {
  const m = /(\d+) requests in ([\d.]+)(ms|s|m)/.exec(out);
  if (!m) throw new Error(`Cannot parse wrk output:\n${out}`);
  const unit = { ms: 0.001, s: 1, m: 60 }[m[3] as "ms" | "s" | "m"];
  const seconds = Number(m[2]) * unit;
  const pct = (p: string) => _ms(new RegExp(`\\s${p}%\\s+([\\d.]+\\w+)`).exec(out)?.[1]);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: Number(m[1]),
    seconds,
    requestsPerSec: Number(m[1]) / seconds,
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: se ? se.slice(1).reduce((s, x) => s + Number(x), 0) : 0,
    latencyMs: { p50: pct("50"), p90: pct("90"), p99: pct("99") },
    threads,
    connections,
  };
}

function _ms(s: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s ?? "");
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1_000, m: 60_000 }[m[2] as "us" | "ms" | "s" | "m"];
}
