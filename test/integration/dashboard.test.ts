/**
 * The web dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core.
 * Sign in with the admin token, see the handlers, post readings and see the counts move, fix a
 * failing handler and replay its dead letter by clicking, and check in JetStream that it was
 * handled; save a screenshot. Also: no session, no data; a change without the CSRF token is refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { chromium } from "playwright-core";
import { ingest, join, startHost, startNats, streamMessages, tempDir, waitFor } from "../_harness.ts";

const CHROMIUM = "/usr/bin/chromium";
const GOOD = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "rooms", async handle(r, ctx) { await ctx.publish("rooms", r); } });
`;
const FLAKY = (fixed: boolean) => `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "meters", retry: { maxAttempts: 1 }, async handle(r, ctx) {
  ${fixed ? "" : 'throw new Error("meter " + r.n + " unreadable");'}
  await ctx.publish("meters", { n: r.n, fixed: true });
} });
`;

test("the dashboard: sign in, handlers and moving counts, replay a dead letter by clicking, a screenshot", { skip: existsSync(CHROMIUM) || process.env.CI ? false : "needs Debian's chromium (apt-get install chromium)" }, async () => {
  const nats = await startNats();
  const host = await startHost({ nats: nats.url, workers: { "rooms.ts": GOOD, "meters.ts": FLAKY(false) } });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    // Without a session nothing but the login form.
    assert.equal((await fetch(`${host.url}/ui/api/state`)).status, 401);
    const page = await browser.newPage();
    await page.goto(`${host.url}/ui`);
    await page.fill("#token", "not the token");
    await page.click("#signin");
    assert.match(await page.textContent("#error") ?? "", /not this host's admin or read-only token/);
    await page.fill("#token", await host.adminToken());
    await page.click("#signin");
    await page.waitForSelector('#handlers tr[data-handler="rooms"]', { timeout: 15_000 });
    await page.waitForSelector('#handlers tr[data-handler="meters"]');

    for (let n = 0; n < 5; n++) assert.equal((await ingest(host.url, "rooms", JSON.stringify({ n }), "application/json")).status, 202);
    await page.waitForFunction(() => document.querySelector('#handlers tr[data-handler="rooms"] .acked')?.textContent === "5", undefined, { timeout: 15_000 });
    assert.equal((await ingest(host.url, "meters", JSON.stringify({ n: 42 }), "application/json")).status, 202);
    await page.waitForSelector("#dlq button.replay", { timeout: 15_000 });
    assert.match(await page.textContent("#dlq tbody") ?? "", /meter 42 unreadable/);
    // An entry in full: its error with the author's line, and the reading itself.
    await page.click("#dlq button.show");
    await page.waitForFunction(() => (document.querySelector("#dlq-entry")?.textContent ?? "").includes('"payload"'), undefined, { timeout: 10_000 });
    const entry = JSON.parse(await page.textContent("#dlq-entry") ?? "{}");
    assert.deepEqual([entry.payload.n, entry.error.message], [42, "meter 42 unreadable"]);
    assert.match(entry.error.at, /meters\.ts:3:\d+$/);
    // The filter keeps one handler's dead letters.
    await page.fill("#dlq-filter", "rooms");
    await page.waitForFunction(() => !document.querySelector("#dlq button.replay"), undefined, { timeout: 10_000 });
    await page.fill("#dlq-filter", "meters");
    await page.waitForSelector("#dlq button.replay", { timeout: 10_000 });

    // A change from the page's session without its CSRF token is refused (what another page could try).
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "outpost_ui");
    assert.ok(session?.httpOnly && session.sameSite === "Strict", JSON.stringify(session));
    const id = await page.getAttribute("#dlq button.replay", "data-id");
    const forged = await fetch(`${host.url}/v1/dlq/${id}/replay`, { method: "POST", headers: { cookie: `outpost_ui=${session!.value}` } });
    assert.equal(forged.status, 401, "no CSRF token, no change");

    // Fix the handler, then replay by clicking: JetStream gets its output.
    await writeFile(join(host.workersDir, "meters.ts"), FLAKY(true));
    await waitFor(async () => (await (await host.api("/v1/handlers")).json()).handlers.find((h: { name: string }) => h.name === "meters").swaps === 1, 20_000, "the fixed version");
    await page.click("#dlq button.replay");
    const [out] = await waitFor(async () => {
      const m = await streamMessages(nats.jsm, "OUTBOX", "out.meters");
      return m.length ? m : undefined;
    }, 20_000, "the replayed reading handled");
    assert.deepEqual(out!.value, { n: 42, fixed: true });
    await page.waitForFunction(() => !document.querySelector("#dlq button.replay"), undefined, { timeout: 15_000 });
    assert.equal((await streamMessages(nats.jsm, "DLQ")).length, 0);

    // A shadow run beside "rooms" shows under its row, with its comparison.
    const shadow = await host.api("/v1/handlers/rooms/shadow?readings=3", { method: "POST", body: GOOD, headers: { "content-type": "text/plain", "outpost-file-name": "rooms.ts" } });
    assert.equal(shadow.status, 201, await shadow.text());
    for (let n = 10; n < 13; n++) assert.equal((await ingest(host.url, "rooms", JSON.stringify({ n }), "application/json")).status, 202);
    await page.waitForFunction(() => /shadow [0-9a-f]{12} finished \(compared 3 readings\): 3 of 3 compared, agreement 100\.0 %/.test(document.querySelector('#handlers tr[data-shadow="rooms"]')?.textContent ?? ""), undefined, { timeout: 15_000 });

    await page.waitForFunction(() => document.querySelectorAll("#rates canvas").length > 0, undefined, { timeout: 15_000 });
    const shot = join(await tempDir("outpost-dashboard-"), "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot: ${shot}`);
    assert.match(host.logs(), /\[ui\] dashboard sign-in \(admin\)/);
  } finally {
    await browser.close();
    await host.stop();
    await nats.stop();
  }
});
