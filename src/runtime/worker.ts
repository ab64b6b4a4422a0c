import { SpareWorkers } from "./spare_worker.ts";
import { readFileSync } from "node:fs";
import { runtime } from "./detect.ts";

/**
 * What a worker may reach on runtimes that can restrict it (Deno): `true` for everything of a
 * kind, or a list (hosts for `net`, paths for `read`/`write`, names for `env`, programs for `run`).
 */
export interface WorkerPermissions {
  net?: boolean | string[];
  read?: boolean | string[];
  write?: boolean | string[];
  env?: boolean | string[];
  run?: boolean | string[];
}

/** Whether this runtime can start a worker with fewer permissions than the host (Deno). */
export function workerPermissionsSupported(): boolean {
  if (runtime === "deno") _denoPermissionsOk ??= _denoWorkerOptionsFlag();
  return runtime === "deno" && _denoPermissionsOk !== false;
}

/**
 * Whether starting a worker with these permissions differs from starting it without: on Deno
 * (per-worker permissions), and on Bun behind the handler process when `net` is asked for (it then
 * runs in the process that keeps TCP).
 */
export function workerPermissionsMatter(p: WorkerPermissions | undefined): boolean {
  if (!p) return false;
  return workerPermissionsSupported() || (runtime === "bun" && _boundary !== undefined && !!p.net);
}

/** Options for {@link spawnWorker}. */
export interface WorkerOptions {
  name: string;
  /** Heap limit in MiB; enforced by Node only (`resourceLimits`). */
  memoryMb?: number;
  permissions?: WorkerPermissions;
}

/** One running worker isolate, the same shape on every runtime. */
export interface WorkerHandle {
  post(msg: unknown, transfer?: ArrayBuffer[]): void;
  onMessage(cb: (msg: unknown) => void): void;
  /** Called once when the worker dies on its own: uncaught error, exit, out of memory. */
  onExit(cb: (reason: string) => void): void;
  terminate(): Promise<void>;
  /** Whether `memoryMb` is really enforced here. */
  readonly heapLimitEnforced: boolean;
  /** Whether the worker runs without ambient permissions (net, files, env, subprocesses). */
  readonly sandboxed: boolean;
}

interface _WebWorker {
  postMessage(msg: unknown, transfer?: ArrayBuffer[]): void;
  terminate(): void;
  addEventListener(type: string, cb: (e: { data?: unknown; message?: string; error?: unknown; preventDefault?(): void }) => void): void;
}

let _denoPermissionsOk: boolean | undefined;

/**
 * Start a module worker from a file URL.
 * @param url the worker's entry module
 * @param opts name, heap limit and permissions
 * @returns a handle that hides the runtime's worker API
 */
/**
 * The environment a worker gets: none of the host's variables (tokens, passwords), but those the
 * handler's `permissions.env` names (`true`: all of them, as the definition asked).
 */
export function workerEnv(p: WorkerPermissions | undefined): Record<string, string> {
  const all = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
  const names = p?.env === true ? Object.keys(all) : Array.isArray(p?.env) ? p.env : [];
  const out: Record<string, string> = {};
  for (const n of names) if (all[n] !== undefined) out[n] = all[n]!;
  return out;
}

export async function spawnWorker(url: URL, opts: WorkerOptions): Promise<WorkerHandle> {
  if ((runtime === "node" || runtime === "bun") && _boundary) return await _boundary.spawn(url, opts);
  if (runtime === "node") return await _nodeWorker(url, opts);
  const WebWorker = (globalThis as unknown as { Worker: new (u: URL, o: object) => _WebWorker }).Worker;
  let w: _WebWorker;
  let sandboxed = false;
  if (runtime === "deno") _denoPermissionsOk ??= _denoWorkerOptionsFlag();
  if (runtime === "deno" && _denoPermissionsOk !== false) {
    const p = opts.permissions ?? {};
    try {
      w = new WebWorker(url, {
        type: "module",
        name: opts.name,
        deno: {
          permissions: {
            read: p.read ?? false,
            write: p.write ?? false,
            net: p.net ?? false,
            env: p.env ?? false,
            run: p.run ?? false,
            ffi: false,
            sys: false,
            import: false,
          },
        },
      });
      _denoPermissionsOk = true;
      sandboxed = !p.net && !p.env && !p.run && !p.write && p.read !== true;
    } catch {
      // Without --unstable-worker-options Deno refuses per-worker permissions.
      _denoPermissionsOk = false;
      w = new WebWorker(url, { type: "module", name: opts.name });
    }
  } else {
    // Bun takes the worker's environment as an option: only what the handler's permissions name.
    w = new WebWorker(url, { type: "module", name: opts.name, ...(runtime === "bun" ? { env: workerEnv(opts.permissions) } : {}) });
  }
  let exitCb: ((reason: string) => void) | undefined;
  let exited = false;
  const fireExit = (reason: string) => {
    if (exited) return;
    exited = true;
    exitCb?.(reason);
  };
  w.addEventListener("error", (e) => {
    e.preventDefault?.();
    fireExit(`uncaught ${_describe(e.error, e.message)}`);
    w.terminate();
  });
  w.addEventListener("close", () => fireExit("worker exited"));
  return {
    post: (m, t) => w.postMessage(m, t ?? []),
    onMessage: (cb) => w.addEventListener("message", (e) => cb(e.data)),
    onExit: (cb) => void (exitCb = cb),
    terminate: async () => {
      exited = true;
      w.terminate();
    },
    heapLimitEnforced: false,
    sandboxed,
  };
}

let _spares: SpareWorkers | undefined;

async function _nodeWorker(url: URL, opts: WorkerOptions): Promise<WorkerHandle> {
  const { Worker } = await import("node:worker_threads");
  _spares ??= new SpareWorkers((u, o) => new Worker(u, o));
  const w = _spares.start(url, {
    name: opts.name,
    ...(opts.memoryMb ? { resourceLimits: { maxOldGenerationSizeMb: opts.memoryMb } } : {}),
    stdout: false,
    stderr: false,
    // Workers run prebuilt JavaScript: they need none of the host's flags, and a loader given with
    // --import (as the test runner does) would otherwise start again in every worker (~100 ms).
    execArgv: [],
    // Not the host's environment (its secrets): only the variables the handler's permissions name.
    env: workerEnv(opts.permissions),
  });
  let exitCb: ((reason: string) => void) | undefined;
  let done = false;
  let lastError = "";
  w.on("error", (e: Error) => {
    lastError = e.name === "Error" && (e as { code?: string }).code === "ERR_WORKER_OUT_OF_MEMORY"
      ? "out of memory"
      : `uncaught ${e.name}: ${e.message}`;
  });
  w.on("exit", (code: number) => {
    if (done) return;
    done = true;
    exitCb?.(lastError || `worker exited with code ${code}`);
  });
  return {
    post: (m, t) => w.postMessage(m, t ?? []),
    onMessage: (cb) => void w.on("message", cb),
    onExit: (cb) => void (exitCb = cb),
    terminate: async () => {
      done = true;
      await w.terminate();
    },
    heapLimitEnforced: opts.memoryMb !== undefined,
    sandboxed: false,
  };
}

/**
 * Deno 2 ends the whole process (instead of throwing) when a worker gets `deno.permissions` without
 * `--unstable-worker-options`: read the flags from /proc first. Undefined when they cannot be read.
 */
function _denoWorkerOptionsFlag(): boolean | undefined {
  try {
    const args = readFileSync("/proc/self/cmdline", "utf8").split("\0");
    return args.some((a) => a === "--unstable-worker-options" || a === "--unstable");
  } catch {
    return undefined;
  }
}

/** "Name: message" of an error event, without the source excerpt or stack some runtimes add. */
function _describe(error: unknown, message: string | undefined): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  const lines = (message ?? "unknown error").split("\n").map((l) => l.trim()).filter(Boolean);
  for (const l of lines) {
    const m = /^(?:Uncaught (?:\(in promise\) )?)?([A-Za-z]*Error|error): (.+)$/.exec(l);
    if (m) return `${m[1] === "error" ? "Error" : m[1]}: ${m[2]}`;
  }
  return lines.find((l) => !l.startsWith("at ")) ?? "unknown error";
}

/** Where the handler process lives and what it may read. */
export interface HandlerProcessOptions {
  /** The child's entry module (built into the bundle directory). */
  entry: string;
  /** Directories the child may read: the handler builds, the handler directory. Nothing else. */
  readable: string[];
  log: { warn(m: string): void; error(m: string): void; info(m: string): void };
}

/** What a handler process may do beyond reading `readable` (Bun: its Landlock policy). */
interface _ProcessPolicy {
  /** TCP connect and bind (Bun: a handler that asks for `permissions.net` runs in a process that keeps them). */
  net: boolean;
}

// Files every Bun handler process may read besides the builds: time zones, and what name
// resolution reads (only the net process resolves names). Nothing of Outpost's.
const _BUN_READ_DIRS = ["/usr/share/zoneinfo"];
const _BUN_READ_FILES = ["/etc/localtime", "/dev/urandom", "/dev/null"];
const _BUN_NET_FILES = ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf"];
const _BUN_NET_DIRS = ["/etc/ssl/certs", "/usr/share/ca-certificates", "/etc/pki"];

/** The handler processes of a host: one on Node; on Bun one without TCP and one with, by the handler's `permissions.net`. */
class _Boundary {
  #o: HandlerProcessOptions;
  #procs = new Map<boolean, HandlerProcess>();
  constructor(o: HandlerProcessOptions) {
    this.#o = o;
  }
  spawn(url: URL, opts: WorkerOptions): Promise<WorkerHandle> {
    const net = runtime !== "bun" || !!opts.permissions?.net;
    let p = this.#procs.get(net);
    if (!p) this.#procs.set(net, (p = new HandlerProcess(this.#o, { net })));
    return p.spawn(url, opts);
  }
  async stop(): Promise<void> {
    await Promise.all([...this.#procs.values()].map((p) => p.stop()));
  }
}

let _boundary: _Boundary | undefined;

/**
 * Run every worker from now on in a child process, reached over IPC, with an empty environment:
 * on Node behind its permission model (file reads limited to `readable`, no child processes); on
 * Bun, which has none, behind Landlock, which the child applies to itself before any handler
 * runs (file reads limited to `readable`, no writes, no TCP unless the handler asks for net, no
 * signals out).
 * @returns a function that stops the children
 */
export function useHandlerProcess(o: HandlerProcessOptions): () => Promise<void> {
  const hp = new _Boundary(o);
  _boundary = hp;
  return async () => {
    if (_boundary === hp) _boundary = undefined;
    await hp.stop();
  };
}

/** The permission flag of this Node: `--permission` from 22.13/23.5, `--experimental-permission` before. */
function _permissionFlags(readable: string[]): string[] {
  const stable = (process as unknown as { allowedNodeEnvironmentFlags: Set<string> }).allowedNodeEnvironmentFlags.has("--permission");
  const paths = readable.map((d) => d.replace(/\/+$/, ""));
  return stable
    ? ["--permission", ...paths.map((d) => `--allow-fs-read=${d}`), "--allow-worker", "--no-warnings"]
    : ["--experimental-permission", `--allow-fs-read=${paths.map((d) => `${d}/*`).join(",")}`, "--allow-worker", "--no-warnings"];
}

type _ChildMsg = { t: "ready"; boundary?: string } | { t: "msg"; id: number; m: unknown } | { t: "exit"; id: number; reason: string };
type _Child = { send(m: unknown): boolean; on(e: string, f: (...a: any[]) => void): void; kill(sig?: string): boolean; connected: boolean; exitCode: number | null };

/** The host's side of the handler process: one child, many workers multiplexed over its IPC channel. */
class HandlerProcess {
  #o: HandlerProcessOptions;
  #policy: _ProcessPolicy;
  #child: Promise<_Child> | undefined;
  #next = 1;
  #workers = new Map<number, { onMessage?: (m: unknown) => void; onExit?: (r: string) => void; dead: boolean }>();
  #stopping = false;

  constructor(o: HandlerProcessOptions, policy: _ProcessPolicy) {
    this.#o = o;
    this.#policy = policy;
  }

  async spawn(url: URL, opts: WorkerOptions): Promise<WorkerHandle> {
    const child = await this.#ensure();
    const id = this.#next++;
    const entry: { onMessage?: (m: unknown) => void; onExit?: (r: string) => void; dead: boolean } = { dead: false };
    this.#workers.set(id, entry);
    child.send({ t: "spawn", id, url: url.href, name: opts.name, ...(opts.memoryMb ? { memoryMb: opts.memoryMb } : {}), env: workerEnv(opts.permissions) });
    return {
      post: (m) => void (entry.dead || child.send({ t: "post", id, m })),
      onMessage: (cb) => void (entry.onMessage = cb),
      onExit: (cb) => void (entry.onExit = cb),
      terminate: async () => {
        entry.dead = true;
        this.#workers.delete(id);
        if (child.connected) child.send({ t: "kill", id });
      },
      // Bun's worker_threads take resourceLimits but do not enforce them.
      heapLimitEnforced: runtime === "node" && opts.memoryMb !== undefined,
      sandboxed: false,
    };
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    const c = this.#child ? await this.#child.catch(() => undefined) : undefined;
    if (c && c.exitCode === null) {
      const gone = new Promise<void>((r) => c.on("exit", () => r()));
      c.kill("SIGTERM");
      await Promise.race([gone, new Promise((r) => setTimeout(r, 2_000))]);
    }
  }

  #ensure(): Promise<_Child> {
    this.#child ??= this.#start().catch((e: Error) => {
      this.#child = undefined;
      throw e;
    });
    return this.#child;
  }

  async #start(): Promise<_Child> {
    const { fork } = await import("node:child_process");
    const bun = runtime === "bun";
    const landlock = bun
      ? {
        readDirs: [...this.#o.readable, ..._BUN_READ_DIRS, ...(this.#policy.net ? _BUN_NET_DIRS : [])],
        readFiles: [..._BUN_READ_FILES, ...(this.#policy.net ? _BUN_NET_FILES : [])],
        net: this.#policy.net,
      }
      : undefined;
    const child = fork(this.#o.entry, landlock ? [JSON.stringify({ landlock })] : [], {
      execArgv: bun ? [] : _permissionFlags(this.#o.readable),
      env: {},
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    }) as unknown as _Child;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("the handler process did not start within 10 s")), 10_000);
      child.on("message", (raw: _ChildMsg) => {
        if (raw.t === "ready") {
          clearTimeout(t);
          if (raw.boundary) {
            if (raw.boundary.startsWith("none")) this.#o.log.warn(`Bun handler process${this.#policy.net ? " (net)" : ""}: ${raw.boundary}`);
            else this.#o.log.info(`Bun handler process${this.#policy.net ? " for handlers that ask for net" : ""}: ${raw.boundary}`);
          }
          resolve();
        } else if (raw.t === "msg") this.#workers.get(raw.id)?.onMessage?.(raw.m);
        else if (raw.t === "exit") {
          const w = this.#workers.get(raw.id);
          this.#workers.delete(raw.id);
          if (w && !w.dead) {
            w.dead = true;
            w.onExit?.(raw.reason);
          }
        }
      });
      child.on("exit", (code: number | null, signal: string | null) => {
        clearTimeout(t);
        reject(new Error(`the handler process exited (${signal ?? code}) while starting`));
        this.#child = undefined;
        // Every worker in it is gone; the isolates restart theirs in a new handler process.
        if (!this.#stopping) this.#o.log.error(`the handler process exited (${signal ?? `code ${code}`}); its handlers restart`);
        for (const [id, w] of this.#workers) {
          this.#workers.delete(id);
          if (!w.dead) {
            w.dead = true;
            w.onExit?.(`the handler process exited (${signal ?? `code ${code}`})`);
          }
        }
      });
    });
    return child;
  }
}
