import { runtime } from "./detect.ts";

/** A certificate and key (PEM text), and optionally the CA that client certificates must chain to. */
export interface TlsFiles {
  cert: string;
  key: string;
  /** Ask clients for a certificate and check it against this CA (Node; the route reads the result). */
  clientCa?: string | undefined;
}

/** A running HTTP server. */
export interface Server {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Stop accepting connections and close the listener. */
  close(): Promise<void>;
  /**
   * Serve a new certificate (a rotation): new connections get it, open ones keep theirs. Node
   * swaps its secure context in place; Deno and Bun restart the listener on the same port.
   */
  reloadTls?(tls: TlsFiles): Promise<void>;
}

/** What {@link serve} needs. */
export interface ServeOptions {
  /** `env` is runtime data the route may pass back to {@link readBodyFast}. */
  fetch: (req: Request, env?: unknown) => Response | Promise<Response>;
  port: number;
  hostname: string;
  /**
   * Most connections open at once (Node) or requests in progress (Deno, Bun, whose servers do
   * not show connections); past it the newcomer is answered 503 and closed, so the process never
   * runs out of file descriptors and `/healthz` answers again as soon as connections close.
   */
  maxConnections?: number;
  /** HTTPS instead of HTTP (HTTP/1.1). */
  tls?: TlsFiles | undefined;
}

/** The answer to a connection past the cap. */
const _BUSY = { error: "too_many_connections", message: "The host has too many open connections; try again shortly" };
// Slow clients must not hold a connection (a file descriptor) for long: headers within 10 s,
// the whole request within 30 s (a 1 MiB body at 35 KB/s).
const _HEADERS_TIMEOUT_MS = 10_000;
const _REQUEST_TIMEOUT_MS = 30_000;

function _busyResponse(): Response {
  return new Response(JSON.stringify(_BUSY), { status: 503, headers: { "content-type": "application/json", "retry-after": "1", connection: "close" } });
}

/** Deno and Bun: the cap counts requests in progress. */
function _capped(fetch: ServeOptions["fetch"], max: number | undefined): ServeOptions["fetch"] {
  if (!max) return fetch;
  let open = 0;
  return async (req, env) => {
    if (open >= max) return _busyResponse();
    open++;
    try {
      return await fetch(req, env);
    } finally {
      open--;
    }
  };
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
    const fetch = _capped(opts.fetch, opts.maxConnections);
    const start = async (port: number, tls: TlsFiles | undefined) => {
      let listening!: () => void;
      const ready = new Promise<void>((r) => (listening = r));
      const s = g.Deno!.serve({ port, hostname: opts.hostname, onListen: () => listening(), ...(tls ? { cert: tls.cert, key: tls.key } : {}) }, fetch);
      await ready;
      return s;
    };
    let s = await start(opts.port, opts.tls);
    const port = s.addr.port;
    return {
      port,
      close: () => s.shutdown(),
      reloadTls: async (tls) => {
        const old = s;
        await old.shutdown();
        s = await start(port, tls);
      },
    };
  }
  if (runtime === "bun" && g.Bun) {
    // Bun would buffer up to its own limit (128 MiB) before our streaming check runs;
    // cap it at a generous bound, the ingest route enforces the configured limit itself.
    const fetch = _capped(opts.fetch, opts.maxConnections);
    const start = (port: number, tls: TlsFiles | undefined) => g.Bun!.serve({
      port,
      hostname: opts.hostname,
      fetch,
      maxRequestBodySize: 64 * 1024 * 1024,
      ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    });
    let s = start(opts.port, opts.tls);
    const port = s.port;
    return {
      port,
      close: async () => void (await s.stop(true)),
      reloadTls: async (tls) => {
        await s.stop(false);
        s = start(port, tls);
      },
    };
  }
  const { serve: nodeServe } = await import("@hono/node-server");
  const https = opts.tls ? await import("node:https") : undefined;
  // Node checks its header and request timeouts every 30 s by default: a slow client could then
  // hold a connection for 40 s (headers) or 60 s (body). Check every second.
  const timeouts = { connectionsCheckingInterval: 1_000, headersTimeout: _HEADERS_TIMEOUT_MS, requestTimeout: _REQUEST_TIMEOUT_MS };
  const secure = (t: TlsFiles) => ({ cert: t.cert, key: t.key, ...(t.clientCa ? { ca: t.clientCa, requestCert: true, rejectUnauthorized: false } : {}) });
  return await new Promise<Server>((resolve, reject) => {
    const srv = nodeServe(
      {
        fetch: opts.fetch, port: opts.port, hostname: opts.hostname,
        ...(https && opts.tls ? { createServer: https.createServer, serverOptions: { ...timeouts, ...secure(opts.tls) } } : { serverOptions: timeouts }),
      } as Parameters<typeof nodeServe>[0],
      (info) => {
        resolve({
          port: info.port,
          ...(https ? { reloadTls: async (t: TlsFiles) => (srv as unknown as { setSecureContext(o: object): void }).setSecureContext(secure(t)) } : {}),
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
    _limitNode(srv as unknown as _NodeServer, opts.maxConnections);
  });
}

interface _NodeSocket {
  once(e: "close", f: () => void): void;
  end(data: string): void;
  destroy(): void;
  setTimeout(ms: number, f: () => void): void;
}
interface _NodeServer {
  prependListener(e: "connection", f: (s: _NodeSocket) => void): void;
  headersTimeout: number;
  requestTimeout: number;
  maxRequestsPerSocket: number;
}

function _limitNode(srv: _NodeServer, max: number | undefined): void {
  srv.headersTimeout = _HEADERS_TIMEOUT_MS;
  srv.requestTimeout = _REQUEST_TIMEOUT_MS;
  // A connection serves at most this many requests, then closes: one client cannot keep one forever.
  srv.maxRequestsPerSocket = 10_000;
  if (!max) return;
  let open = 0;
  const body = JSON.stringify(_BUSY);
  const busy = `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  // Runs before node:http's own listener: a connection past the cap is answered and closed
  // before any request on it is parsed.
  srv.prependListener("connection", (sock) => {
    if (open >= max) {
      sock.end(busy);
      sock.setTimeout(1_000, () => sock.destroy());
      return;
    }
    open++;
    sock.once("close", () => open--);
  });
}

/**
 * The subject common name of the client certificate of this request's connection, when the client
 * sent one that chains to `--tls-client-ca` (Node; Deno's and Bun's servers do not show it).
 * @param env the second argument the server passed to `fetch`
 */
export function clientCertificateName(env: unknown): string | undefined {
  const socket = (env as { incoming?: { socket?: { authorized?: boolean; getPeerCertificate?(): { subject?: { CN?: string | string[] } } } } } | undefined)?.incoming?.socket;
  if (!socket?.authorized || typeof socket.getPeerCertificate !== "function") return undefined;
  const cn = socket.getPeerCertificate().subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn;
}

/** A request body passed its limit (by Content-Length, or while it was read). */
export class BodyLimitError extends Error {
  override name = "BodyLimitError";
  readonly limit: number;
  constructor(limit: number) {
    super(`Body exceeds the ${limit}-byte limit`);
    this.limit = limit;
  }
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
        reject(new BodyLimitError(limit));
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
