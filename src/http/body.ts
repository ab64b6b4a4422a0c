import { BodyLimitError, readBodyFast } from "../runtime/serve.ts";

export { BodyLimitError };

/**
 * Read a request body, stopping as soon as it passes `limit` bytes, whatever Content-Length said.
 * @param req the request
 * @param limit most bytes accepted
 * @param env what the server passed to `fetch` (lets Node read its socket stream directly)
 * @throws BodyLimitError
 */
export async function readBody(req: Request, limit: number, env?: unknown): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (declared > limit) throw new BodyLimitError(limit);
  const fast = readBodyFast(env, limit);
  if (fast) return await fast;
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
