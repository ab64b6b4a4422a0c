import { encodeCbor } from "../codec/cbor.ts";

/** The body of every error answer. */
export interface Problem {
  /** Machine-readable kind, e.g. `invalid_reading`. */
  error: string;
  /** One sentence for a person. */
  message: string;
  [extra: string]: unknown;
}

/**
 * Answer with `body` as JSON, or as CBOR when the client's Accept header prefers it.
 * @param req the request (for Accept)
 * @param status HTTP status
 * @param headers extra headers
 */
export function reply(req: Request, status: number, body: unknown, headers: Record<string, string> = {}): Response {
  const accept = req.headers.get("accept") ?? "";
  if (/application\/cbor/.test(accept) && !/application\/json/.test(accept.split(",")[0] ?? "")) {
    return new Response(encodeCbor(body) as Uint8Array<ArrayBuffer>, { status, headers: { ...headers, "content-type": "application/cbor" } });
  }
  return new Response(JSON.stringify(body), { status, headers: { ...headers, "content-type": "application/json" } });
}
