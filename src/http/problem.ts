import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Logger } from "../util/log.ts";
import { reply, type Problem } from "./reply.ts";

/**
 * What a route throws when it refuses a request: a status, a machine-readable code, one sentence
 * for a person, and what else the answer carries (`index`, `limit`, `stored` …). One `onError`
 * ({@link problemHandler}) writes it as JSON or CBOR; routes never build error answers themselves.
 */
export class ProblemError extends Error {
  override name = "ProblemError";
  readonly status: number;
  readonly code: string;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.extra = extra;
    this.headers = headers;
  }

  /** The answer's body: `{ error, message, ...extra }`. */
  body(): Problem {
    return { error: this.code, message: this.message, ...this.extra };
  }
}

/**
 * The host's `onError`: a {@link ProblemError} becomes its answer; anything else is a 500 with
 * the error logged.
 */
export function problemHandler(log: Logger): (e: Error, c: Context) => Response {
  return (e, c) => {
    if (e instanceof ProblemError) return reply(c.req.raw, e.status, e.body(), e.headers);
    // hono's own middleware (bearer-auth) throws its answer.
    if (e instanceof HTTPException) return e.getResponse();
    // The details (paths, stack) go to the log only; the caller gets an id to find them there.
    const id = Math.random().toString(36).slice(2, 10);
    log.error(`unhandled error ${id} on ${c.req.method} ${new URL(c.req.url).pathname}: ${e.stack ?? e.message}`);
    return reply(c.req.raw, 500, { error: "internal", message: `Internal error ${id}; the host's log has the details` });
  };
}
