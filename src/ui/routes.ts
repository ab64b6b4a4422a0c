/**
 * `GET /ui`: the web dashboard, served by the host itself. A login with the admin token (or the
 * read-only token: then without actions) opens a session (see sessions.ts); the page calls the
 * host's own routes with it, and `/ui/api/state` for what they do not show in one place.
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Hono } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import { EMBEDDED } from "../bundler/embedded.ts";
import { sameBytes } from "../sensors/registry.ts";
import { packageRoot } from "../util/package_root.ts";
import { reply } from "../http/reply.ts";
import type { AdminTokens } from "../http/admin_auth.ts";
import { dashboardPage, loginPage } from "./page.ts";
import { SESSION_COOKIE, type UiSessions } from "./sessions.ts";

/** What the dashboard's state route reads from the host. */
export interface UiDeps {
  tokens: AdminTokens;
  sessions: UiSessions;
  secure: boolean;
  state: () => unknown;
  log: { info(m: string): void };
}

let _assets: Promise<{ js: string; css: string }> | undefined;

/** uPlot's files: embedded in the single file, or from the installed package. */
function _uplot(): Promise<{ js: string; css: string }> {
  _assets ??= (async () => {
    if (EMBEDDED?.uplotJs) return { js: EMBEDDED.uplotJs, css: EMBEDDED.uplotCss };
    const dir = join(await packageRoot(), "node_modules/uplot/dist");
    return { js: await readFile(join(dir, "uPlot.iife.min.js"), "utf8"), css: await readFile(join(dir, "uPlot.min.css"), "utf8") };
  })();
  return _assets;
}

function _same(a: string, b: string | undefined): boolean {
  if (!b) return false;
  const e = new TextEncoder();
  return sameBytes(e.encode(a), e.encode(b));
}

/** The dashboard's routes. */
export function uiRoutes(d: UiDeps): Hono {
  const app = new Hono();
  const html = (body: string, status = 200) => new Response(body, {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      // Only this host's own script, styles and calls; no framing by another page.
      "content-security-policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
      "x-frame-options": "DENY",
      "cache-control": "no-store",
    },
  });
  app.get("/ui", (c) => {
    const s = d.sessions.of(c);
    return html(s ? dashboardPage(s.csrf, s.role) : loginPage());
  });
  app.post("/ui/login", async (c) => {
    const form = await c.req.parseBody().catch(() => ({} as Record<string, unknown>));
    const token = typeof form.token === "string" ? form.token.trim() : "";
    const role = _same(d.tokens.admin, token) ? "admin" : d.tokens.read && _same(d.tokens.read, token) ? "read" : undefined;
    if (!role) return html(loginPage("That is not this host's admin or read-only token."), 401);
    const s = d.sessions.open(role);
    setCookie(c, SESSION_COOKIE, s.id, { httpOnly: true, sameSite: "Strict", path: "/", secure: d.secure, maxAge: 12 * 3600 });
    d.log.info(`dashboard sign-in (${role})`);
    return c.redirect("/ui", 303);
  });
  app.post("/ui/logout", async (c) => {
    const s = d.sessions.of(c);
    const form = await c.req.parseBody().catch(() => ({} as Record<string, unknown>));
    if (s && form.csrf === s.csrf) d.sessions.close(s.id);
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.redirect("/ui", 303);
  });
  app.get("/ui/api/state", (c) => {
    if (!d.sessions.allows(c, "read")) return reply(c.req.raw, 401, { error: "unauthorized", message: "Sign in at /ui" });
    return reply(c.req.raw, 200, d.state());
  });
  app.get("/ui/uplot.js", async (c) => c.body((await _uplot()).js, 200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "max-age=86400" }));
  app.get("/ui/uplot.css", async (c) => c.body((await _uplot()).css, 200, { "content-type": "text/css; charset=utf-8", "cache-control": "max-age=86400" }));
  return app;
}
