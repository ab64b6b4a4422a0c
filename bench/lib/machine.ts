/** What the run happened on: CPU, memory, runtime and broker versions. */
import { execFileSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { ROOT } from "./procs.ts";

/** Description of the machine and tools. */
export interface Machine {
  nproc: number;
  cpuModel: string;
  memoryGb: number;
  os: string;
  node: string;
  deno: string;
  bun: string;
  natsServer: string;
  redisServer: string;
  wrk: string;
}

function _v(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 }).split("\n")[0]!.trim();
  } catch (e) {
    // wrk -v exits 1 after printing its version.
    const out = String((e as { stdout?: string }).stdout ?? "").split("\n")[0]!.trim();
    return out || "not found";
  }
}

/** Describe this machine. */
export function describeMachine(): Machine {
  let os = "";
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(execFileSync("cat", ["/etc/os-release"], { encoding: "utf8" }))?.[1] ?? "";
  } catch { /* not Linux */ }
  return {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGb: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os,
    node: process.version,
    deno: _v(join(ROOT, "node_modules/.bin/deno"), ["--version"]),
    bun: _v(join(ROOT, "node_modules/.bin/bun"), ["--version"]),
    natsServer: _v("nats-server", ["--version"]),
    redisServer: _v("redis-server", ["--version"]),
    wrk: _v("wrk", ["-v"]),
  };
}
