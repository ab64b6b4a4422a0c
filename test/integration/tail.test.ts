/**
 * The live tail: GET /v1/events (server-sent events, admin token) on Node, Deno and Bun shows each
 * message's outcome and the handlers' log lines, filtered by handler and level; `outpost tail
 * --json` prints them until it is stopped.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { hostCommand, ingest, RUNTIMES, startHost, startNats, waitFor } from "../_harness.ts";

const OK = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "good", async handle(r, ctx) { ctx.log.warn("saw", r.n); } });
`;
const BAD = `import { defineHandler } from "outpost/handler";
export default defineHandler({ topic: "bad", retry: { maxAttempts: 1 }, async handle(r) { throw new Error("broken " + r.n); } });
`;

/** Read SSE events from a response until `enough` says so (bounded by the caller's waitFor). */
function collect(res: Response): { events: any[]; stop(): void } {
  const events: any[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let stopped = false;
  void (async () => {
    while (!stopped) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: "" }));
      if (done) break;
      buf += value;
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split("\n").find((l) => l.startsWith("data:"));
        if (data) events.push({ event: /^event: ?(\S+)/m.exec(block)?.[1], ...JSON.parse(data.slice(5)) });
      }
    }
  })();
  return { events, stop: () => { stopped = true; void reader.cancel().catch(() => {}); } };
}

for (const runtime of RUNTIMES) {
  test(`on ${runtime}, GET /v1/events streams outcomes and log lines, filtered`, async () => {
    const nats = await startNats();
    const host = await startHost({ runtime, nats: nats.url, workers: { "good.ts": OK, "bad.ts": BAD } });
    try {
      assert.equal((await fetch(`${host.url}/v1/events`)).status, 401, "the tail needs the admin token");
      const all = collect(await host.api("/v1/events", { headers: { accept: "text/event-stream" } }));
      const onlyBad = collect(await host.api("/v1/events?handler=bad&level=error", { headers: { accept: "text/event-stream" } }));
      await waitFor(() => all.events.some((e) => e.event === "hello") && onlyBad.events.some((e) => e.event === "hello"), 10_000, "both tails connected");
      assert.equal((await ingest(host.url, "good", JSON.stringify({ n: 1 }), "application/json")).status, 202);
      assert.equal((await ingest(host.url, "bad", JSON.stringify({ n: 2 }), "application/json")).status, 202);
      await waitFor(() => all.events.some((e) => e.type === "outcome" && e.outcome === "dead_lettered"), 20_000, "the dead letter in the tail");
      await waitFor(() => all.events.some((e) => e.type === "outcome" && e.outcome === "acked" && e.handler === "good"), 20_000, "the ack in the tail");
      const acked = all.events.find((e) => e.outcome === "acked");
      assert.equal(acked.topic, "good");
      assert.equal(typeof acked.seq, "number");
      assert.equal(typeof acked.durationMs, "number");
      const dead = all.events.find((e) => e.outcome === "dead_lettered");
      assert.equal(dead.error, "Error: broken 2");
      assert.ok(all.events.some((e) => e.type === "log" && e.scope === "good" && e.msg === "saw 1" && e.level === "warn"), "the handler's log line");
      // The filtered tail saw only bad's outcomes and no log line below error.
      await waitFor(() => onlyBad.events.some((e) => e.outcome === "dead_lettered"), 10_000, "the filtered tail");
      assert.ok(onlyBad.events.filter((e) => e.event !== "hello").every((e) => (e.type === "outcome" && e.handler === "bad") || (e.type === "log" && e.level === "error")), JSON.stringify(onlyBad.events));
      all.stop();
      onlyBad.stop();
    } finally {
      await host.stop();
      await nats.stop();
    }
  });
}

test("outpost tail --json prints the host's events until it is stopped", async () => {
  const nats = await startNats();
  const host = await startHost({ nats: nats.url, workers: { "good.ts": OK } });
  const [cmd, ...pre] = hostCommand("node");
  const tail = spawn(cmd!, [...pre, "tail", "--json", "--url", host.url, "--data-dir", host.dataDir], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  tail.stdout!.on("data", (d) => (out += d));
  tail.stderr!.on("data", (d) => (out += d));
  try {
    // The tail is connected once a posted reading's outcome comes through.
    await waitFor(async () => {
      await ingest(host.url, "good", JSON.stringify({ n: 7 }), "application/json");
      return /"outcome":"acked"/.test(out);
    }, 20_000, `outpost tail to show an ack:\n${out}`);
    const line = out.split("\n").find((l) => l.includes('"outcome":"acked"'))!;
    assert.equal(JSON.parse(line).handler, "good");
  } finally {
    tail.kill("SIGINT");
    await new Promise((r) => tail.once("exit", r));
    await host.stop();
    await nats.stop();
  }
});
