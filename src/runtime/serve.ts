import { runtime } from "./detect.ts";

/** A running HTTP server. */
export interface Server {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Stop accepting connections and close the listener. */
  close(): Promise<void>;
}

/** What {@link serve} needs. */
export interface ServeOptions {
  /** `env` is runtime data the route may pass back to {@link readBodyFast}. */
  fetch: (req: Request, env?: unknown) => Response | Promise<Response>;
  port: number;
  hostname: string;
}

interface _DenoServer {
  addr: { port: number };
  shutdown(): Promise<void>;
}
interface _BunServer {
  port: number;
  stop(closeActive?: boolean): void | Promise<void>;
}

/**
 * Serve `fetch` over HTTP with the runtime's native server (Deno.serve, Bun.serve,
 * node:http through @hono/node-server).
 * @param opts handler, port and address
 * @returns the bound server
 */
export async function serve(opts: ServeOptions): Promise<Server> {
  const g = globalThis as unknown as {
    Deno?: { serve(o: object, h: ServeOptions["fetch"]): _DenoServer };
    Bun?: { serve(o: object): _BunServer };
  };
  if (runtime === "deno" && g.Deno) {
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    const s = g.Deno.serve({ port: opts.port, hostname: opts.hostname, onListen: () => listening() }, opts.fetch);
    await ready;
    return { port: s.addr.port, close: () => s.shutdown() };
  }
  if (runtime === "bun" && g.Bun) {
    // Bun would buffer up to its own limit (128 MiB) before our streaming check runs;
    // cap it at a generous bound, the ingest route enforces the configured limit itself.
    const s = g.Bun.serve({
      port: opts.port,
      hostname: opts.hostname,
      fetch: opts.fetch,
      maxRequestBodySize: 64 * 1024 * 1024,
    });
    return { port: s.port, close: async () => void (await s.stop(true)) };
  }
  const { serve: nodeServe } = await import("@hono/node-server");
  return await new Promise<Server>((resolve, reject) => {
    const srv = nodeServe(
      { fetch: opts.fetch, port: opts.port, hostname: opts.hostname },
      (info) => {
        resolve({
          port: info.port,
          close: () =>
            new Promise<void>((res) => {
              const s = srv as unknown as { close(cb: () => void): void; closeAllConnections?(): void };
              s.close(() => res());
              s.closeAllConnections?.();
            }),
        });
      },
    );
    (srv as unknown as { once(e: string, f: (e: Error) => void): void }).once("error", reject);
  });
}

/** The body grew past the limit while it was read. */
export class BodyLimitError extends Error {
  override name = "BodyLimitError";
}

/**
 * Read a request body of at most `limit` bytes straight from Node's socket stream when the
 * request came through @hono/node-server (building the web ReadableStream costs more than the
 * rest of a small ingest request); elsewhere return undefined and let the caller read `req.body`.
 * @param env the second argument the server passed to `fetch`
 * @throws BodyLimitError as soon as more than `limit` bytes arrived
 */
export function readBodyFast(env: unknown, limit: number): Promise<Uint8Array> | undefined {
  const incoming = (env as { incoming?: NodeStream } | undefined)?.incoming;
  if (runtime !== "node" || !incoming || typeof incoming.on !== "function") return undefined;
  return new Promise<Uint8Array>((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    incoming.on("data", (c: Uint8Array) => {
      size += c.byteLength;
      if (size > limit) {
        incoming.pause();
        incoming.removeAllListeners("data");
        reject(new BodyLimitError(`Body exceeds the ${limit}-byte limit`));
        return;
      }
      chunks.push(c);
    });
    incoming.once("end", () => {
      if (size > limit) return;
      if (chunks.length === 1) return resolve(chunks[0]!);
      const out = new Uint8Array(size);
      let off = 0;
      for (const c of chunks) {
        out.set(c, off);
        off += c.byteLength;
      }
      resolve(out);
    });
    incoming.once("error", reject);
  });
}

interface NodeStream {
  on(e: string, f: (...a: any[]) => void): void;
  once(e: string, f: (...a: any[]) => void): void;
  pause(): void;
  removeAllListeners(e: string): void;
}
