/**
 * Sessions of the web dashboard: a login with the admin (or read-only) token gives a random
 * session id in an HttpOnly, SameSite=Strict cookie scoped to the host, and a CSRF token the page
 * sends back on every change (a header another origin's page cannot set). The token itself never
 * goes into a cookie. Sessions live in memory (a restart logs everyone out) for 12 hours.
 * @module
 */
import { getCookie } from "hono/cookie";
import type { Context } from "hono";

/** The cookie that carries the session id. */
export const SESSION_COOKIE = "outpost_ui";
const _TTL_MS = 12 * 3_600_000;

interface _Session {
  role: "admin" | "read";
  csrf: string;
  until: number;
}

function _id(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The host's dashboard sessions. */
export class UiSessions {
  #s = new Map<string, _Session>();

  /** Start a session. @returns its id (for the cookie) and CSRF token (for the page) */
  open(role: "admin" | "read"): { id: string; csrf: string } {
    const now = Date.now();
    for (const [k, v] of this.#s) if (v.until < now) this.#s.delete(k);
    const id = _id();
    const csrf = _id();
    this.#s.set(id, { role, csrf, until: now + _TTL_MS });
    return { id, csrf };
  }

  close(id: string | undefined): void {
    if (id) this.#s.delete(id);
  }

  /** The session of a request (by its cookie), if any and not expired. */
  of(c: Context): (_Session & { id: string }) | undefined {
    const id = getCookie(c, SESSION_COOKIE);
    const s = id ? this.#s.get(id) : undefined;
    if (!s || s.until < Date.now()) return undefined;
    return { ...s, id: id! };
  }

  /**
   * Whether a request's session may do what it asks at `level`: a read-only session only reads,
   * and every change must carry the session's CSRF token in `x-csrf-token`.
   */
  allows(c: Context, level: "admin" | "read"): boolean {
    const s = this.of(c);
    if (!s) return false;
    if (level === "admin" && s.role !== "admin") return false;
    const changes = c.req.method !== "GET" && c.req.method !== "HEAD";
    return !changes || c.req.header("x-csrf-token") === s.csrf;
  }
}
