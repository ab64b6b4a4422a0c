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
  fetch: (req: Request) => Response | Promise<Response>;
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
