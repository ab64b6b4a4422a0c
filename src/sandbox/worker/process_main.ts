/**
 * The handler process: the child the host starts to run worker-tier handlers and the schema
 * isolate behind a boundary. On Node it is the permission model: it reads only the handler builds
 * (`--allow-fs-read`) and starts no programs. On Bun it restricts itself with Landlock before
 * anything else (the policy is its only argument): file reads limited to the builds, no writes, no
 * TCP unless its handlers asked for net, no signals out. Either way it has an empty environment
 * and no secret in its command line, and its worker threads inherit all of that. It multiplexes
 * the host's workers over the IPC channel: spawn, post, kill in; message and exit out.
 * @module
 */
import { Worker, type WorkerOptions } from "node:worker_threads";
import { SpareWorkers, SPARES } from "../../runtime/spare_worker.ts";
import { restrictSelf, type LandlockPolicy } from "./landlock.ts";

type _In =
  | { t: "spawn"; id: number; url: string; name: string; memoryMb?: number; env: Record<string, string> }
  | { t: "post"; id: number; m: unknown }
  | { t: "kill"; id: number };

const _workers = new Map<number, Worker>();
// On Node a worker is started ahead for the next handler (Bun starts them as before).
const _spares = SPARES ? new SpareWorkers((u, o) => new Worker(u, o)) : { start: (u: URL, o: WorkerOptions) => new Worker(u, o) };
const _send = (m: unknown) => process.send?.(m);

process.on("message", (raw) => {
  const m = raw as _In;
  if (m.t === "spawn") {
    let lastError = "";
    let w: Worker;
    try {
      w = _spares.start(new URL(m.url), {
        name: m.name,
        ...(m.memoryMb ? { resourceLimits: { maxOldGenerationSizeMb: m.memoryMb } } : {}),
        stdout: false,
        stderr: false,
        // No execArgv: a worker given its own (even []) leaves the permission model on Node 20;
        // without, it inherits this process's flags, which are the permission flags and nothing else.
        env: m.env,
      });
    } catch (e) {
      _send({ t: "exit", id: m.id, reason: `cannot start: ${(e as Error).message}` });
      return;
    }
    _workers.set(m.id, w);
    w.on("message", (d) => _send({ t: "msg", id: m.id, m: d }));
    w.on("error", (e: Error) => {
      lastError = (e as { code?: string }).code === "ERR_WORKER_OUT_OF_MEMORY" ? "out of memory" : `uncaught ${e.name}: ${e.message}`;
    });
    w.on("exit", (code) => {
      if (!_workers.has(m.id)) return;
      _workers.delete(m.id);
      _send({ t: "exit", id: m.id, reason: lastError || `worker exited with code ${code}` });
    });
  } else if (m.t === "post") {
    _workers.get(m.id)?.postMessage(m.m);
  } else if (m.t === "kill") {
    const w = _workers.get(m.id);
    _workers.delete(m.id);
    void w?.terminate();
  }
});
// The host went away: so does this process (and every handler in it).
process.on("disconnect", () => process.exit(0));

const _config = JSON.parse(process.argv[2] ?? "{}") as { landlock?: LandlockPolicy };
let _boundaryText: string | undefined;
if (_config.landlock) {
  try {
    const r = await restrictSelf(_config.landlock);
    _boundaryText = `Landlock ABI ${r.abi}: reads limited to the handler builds, no file writes` +
      (r.net ? ", no TCP" : _config.landlock.net ? "" : ", TCP not restricted (kernel older than 6.7)") +
      (r.scoped ? ", no signals to other processes" : "");
  } catch (e) {
    _boundaryText = `none: ${(e as Error).message}; worker-tier handlers can read what the host can (use isolation: "wasm" for code you did not write)`;
  }
}
_send({ t: "ready", ...(_boundaryText ? { boundary: _boundaryText } : {}) });
