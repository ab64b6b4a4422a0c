/** The isolate's side of the channel to its host, the same on every runtime. */
export interface HostPort {
  post(msg: unknown, transfer?: ArrayBuffer[]): void;
  onMessage(cb: (msg: unknown) => void): void;
}

/**
 * Open the channel to the host from inside a worker: the Web Worker global on Deno,
 * `node:worker_threads` on Node and Bun.
 */
export async function hostPort(): Promise<HostPort> {
  const g = globalThis as unknown as {
    Deno?: unknown;
    postMessage(m: unknown, t?: ArrayBuffer[]): void;
    addEventListener(t: string, cb: (e: { data: unknown }) => void): void;
  };
  if (g.Deno) {
    return {
      post: (m, t) => g.postMessage(m, t ?? []),
      onMessage: (cb) => g.addEventListener("message", (e) => cb(e.data)),
    };
  }
  const { parentPort } = await import("node:worker_threads");
  if (!parentPort) throw new TypeError("Not running inside a worker");
  return {
    post: (m, t) => parentPort.postMessage(m, t ?? []),
    onMessage: (cb) => void parentPort.on("message", cb),
  };
}
