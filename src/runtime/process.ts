import { spawn as _spawn } from "node:child_process";

/** A child process started by {@link spawn}. */
export interface Child {
  readonly pid: number;
  /** Resolves with the exit code (or null when killed by a signal). */
  readonly exited: Promise<number | null>;
  kill(signal?: "SIGTERM" | "SIGKILL" | "SIGINT" | "SIGHUP"): void;
  /** Called with each line the child writes to stdout or stderr. */
  onLine(cb: (line: string) => void): void;
}

/**
 * Start a program (node:child_process exists on Node, Deno and Bun alike).
 * @param cmd path of the program
 * @param args its arguments
 * @param opts.ownGroup start it in a process group of its own
 * @returns the running child
 */
export function spawn(cmd: string, args: string[], opts: { ownGroup?: boolean } = {}): Child {
  // ownGroup: a Ctrl-C in the terminal reaches the host alone, which drains and then stops the child.
  const cp = _spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...(opts.ownGroup ? { detached: true } : {}) });
  const listeners: ((line: string) => void)[] = [];
  const exited = new Promise<number | null>((resolve, reject) => {
    cp.once("error", reject);
    cp.once("exit", (code) => resolve(code));
  });
  for (const stream of [cp.stdout, cp.stderr]) {
    let buf = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        for (const l of listeners) l(line);
      }
    });
  }
  return {
    pid: cp.pid ?? -1,
    exited,
    kill: (signal = "SIGTERM") => void cp.kill(signal),
    onLine: (cb) => void listeners.push(cb),
  };
}

/**
 * Run a program to completion and collect its output.
 * @returns exit code and everything it printed
 */
export async function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(cmd, args);
  const lines: string[] = [];
  child.onLine((l) => lines.push(l));
  const code = await child.exited;
  return { code, output: lines.join("\n") };
}

/** Whether a process with this pid exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Send a signal to a process by pid, ignoring a process that is already gone. */
export function signalPid(pid: number, signal: "SIGTERM" | "SIGKILL"): void {
  try {
    process.kill(pid, signal);
  } catch { /* already gone */ }
}

/** Call `cb` once on SIGINT or SIGTERM. */
export function onShutdownSignal(cb: (signal: string) => void): void {
  let fired = false;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (fired) return;
      fired = true;
      cb(sig);
    });
  }
}

/** Environment variables of this process. */
export function env(): Record<string, string | undefined> {
  return process.env;
}

/** Command-line arguments after the script name. */
export function argv(): string[] {
  return process.argv.slice(2);
}

/** Exit the process with `code`. */
export function exit(code: number): never {
  process.exit(code);
}

/** Write text to stdout / stderr without a trailing newline added. */
export function writeOut(text: string): void {
  process.stdout.write(text);
}
export function writeErr(text: string): void {
  process.stderr.write(text);
}

/** Resident set size of this process in bytes. */
export function rss(): number {
  return process.memoryUsage().rss;
}

/**
 * The command that starts this program again (runtime binary and script), for a service unit.
 * @param script the entry file when it is known (the single file or src/cli/bin.ts)
 */
export function selfCommand(script: string): string[] {
  const g = globalThis as unknown as { Deno?: { execPath(): string } };
  if (g.Deno) return [g.Deno.execPath(), "run", "-A", "--unstable-worker-options", script];
  return [process.execPath, script];
}

/** The entry script this process runs (the single file, or src/cli/bin.ts). */
export function entryScript(): string {
  const g = globalThis as unknown as { Deno?: { mainModule: string } };
  if (g.Deno) return new URL(g.Deno.mainModule).pathname;
  return process.argv[1] ?? "";
}
