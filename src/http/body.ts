import { BodyLimitError, readBodyFast } from "../runtime/serve.ts";

export { BodyLimitError };

/** The body did not arrive within its time (a slow or stalled client). */
export class BodyTimeoutError extends Error {
  override name = "BodyTimeoutError";
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super(`The request body did not arrive within ${timeoutMs / 1000} s`);
    this.timeoutMs = timeoutMs;
  }
}

/** How long a whole body may take to arrive (a 1 MiB body at 35 KB/s), on every runtime. */
export const BODY_TIMEOUT_MS = 30_000;

/**
 * Read a request body, stopping as soon as it passes `limit` bytes, whatever Content-Length said.
 * @param req the request
 * @param limit most bytes accepted
 * @param env what the server passed to `fetch` (lets Node read its socket stream directly)
 * @param timeoutMs how long the whole body may take (Node's server enforces its own as well)
 * @throws BodyLimitError, BodyTimeoutError
 */
export async function readBody(req: Request, limit: number, env?: unknown, timeoutMs = BODY_TIMEOUT_MS): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (declared > limit) throw new BodyLimitError(limit);
  const fast = readBodyFast(env, limit);
  if (fast) return await fast;
  if (!req.body) return new Uint8Array(0);
  // A declared length within the limit: the server reads exactly that many bytes, so the body is
  // read whole, under one deadline (on Deno and Bun far cheaper than a stream reader, a timer and a
  // race per chunk). Without a length (chunked) it is counted chunk by chunk below.
  // Deno's server has no request timeout of its own: a stalled body must not hold the request.
  const deadline = Date.now() + timeoutMs;
  if (Number.isInteger(declared) && declared >= 0) {
    const whole = await _byDeadline(req.arrayBuffer(), deadline);
    if (whole === "late") throw new BodyTimeoutError(timeoutMs);
    return new Uint8Array(whole);
  }
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const next = await _byDeadline(reader.read(), deadline);
    if (next === "late") {
      await reader.cancel().catch(() => {});
      throw new BodyTimeoutError(timeoutMs);
    }
    const { done, value } = next;
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new BodyLimitError(limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/** `p`, or "late" once `deadline` (epoch ms) passed first. */
async function _byDeadline<T>(p: Promise<T>, deadline: number): Promise<T | "late"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
