import { BodyLimitError, readBodyFast } from "../runtime/serve.ts";

/** The body exceeded the configured limit. */
export class BodyTooLargeError extends Error {
  override name = "BodyTooLargeError";
  readonly limit: number;
  constructor(limit: number) {
    super(`Body exceeds the ${limit}-byte limit`);
    this.limit = limit;
  }
}

/**
 * Read a request body, stopping as soon as it passes `limit` bytes, whatever Content-Length said.
 * @param req the request
 * @param limit most bytes accepted
 * @param env what the server passed to `fetch` (lets Node read its socket stream directly)
 * @throws BodyTooLargeError
 */
export async function readBody(req: Request, limit: number, env?: unknown): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (declared > limit) throw new BodyTooLargeError(limit);
  const fast = readBodyFast(env, limit);
  if (fast) {
    try {
      return await fast;
    } catch (e) {
      if (e instanceof BodyLimitError) throw new BodyTooLargeError(limit);
      throw e;
    }
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLargeError(limit);
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
