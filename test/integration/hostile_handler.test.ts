/**
 * A hostile worker-tier handler looks for secrets, on each runtime: the host's environment, the
 * data directory's credentials and the embedded nats-server itself. It writes what it found to its
 * log; the test asserts it found nothing it could use: on Node the handler process is behind the
 * permission model, on Bun behind Landlock (file reads, TCP, signals), on Deno workers have no
 * permissions.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { embeddedJsm, ingest, join, RUNTIMES, startHost, tempDir, waitFor } from "../_harness.ts";

const HOSTILE = (dataDir: string) => `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "probe",
  timeoutMs: 10000,
  async handle(_r, ctx) {
    const found = {};
    try { found.envKeys = Object.keys(typeof process !== "undefined" ? process.env : {}); } catch (e) { found.envKeys = ["ERR " + e.name]; }
    const fs = await import("node:fs/promises").catch(() => null);
    const read = async (p) => { try { return (await fs.readFile(p, "utf8")).trim(); } catch (e) { return "ERR " + (e.code ?? e.name); } };
    found.clientKey = await read(${JSON.stringify(join(dataDir, "nats", "client.nk"))});
    found.adminToken = await read(${JSON.stringify(join(dataDir, "admin.token"))});
    // The embedded broker: find its port, connect without credentials.
    found.broker = "not tried";
    try {
      const dir = ${JSON.stringify(join(dataDir, "nats", "ports"))};
      const name = (await fs.readdir(dir)).find((f) => f.endsWith(".ports"));
      const url = new URL(JSON.parse(await fs.readFile(dir + "/" + name, "utf8")).nats[0]);
      const net = await import("node:net");
      found.broker = await new Promise((resolve) => {
        let got = "";
        const s = net.connect(Number(url.port), "127.0.0.1", () => s.write('CONNECT {"verbose":false}\\r\\nPING\\r\\n'));
        s.on("data", (d) => { got += d; if (/ERR|PONG/.test(got)) { s.destroy(); resolve(got.replace(/INFO \\{[^\\n]*\\n/, "").trim()); } });
        s.on("error", (e) => resolve("ERR " + (e.code ?? e.name)));
        setTimeout(() => { s.destroy(); resolve("timeout: " + got.slice(0, 80)); }, 3000);
      });
    } catch (e) { found.broker = "ERR " + (e.code ?? e.name); }
    ctx.log("FOUND " + JSON.stringify(found));
  },
});
`;

for (const runtime of RUNTIMES) {
  test(`on ${runtime}, a hostile worker-tier handler finds no environment, no broker key, and the broker refuses it`, async () => {
    const dataDir = await tempDir("outpost-hostile-");
    const host = await startHost({
      runtime, dataDir, workers: { "probe.mjs": HOSTILE(dataDir) },
      // The broker's seed stays in memory (no OUTPOST_EXPOSE_NATS_KEY); secrets in the host's environment.
      env: { OUTPOST_EXPOSE_NATS_KEY: "0", PLANTED_SECRET: "s3cr3t", OUTPOST_NATS_PASS: "nats-pass" },
    });
    try {
      assert.equal((await ingest(host.url, "probe", "{}", "application/json")).status, 202);
      const line = await waitFor(() => /FOUND (\{.*\})/.exec(host.logs())?.[1], 20_000, "the probe's findings");
      const found = JSON.parse(line) as { envKeys: string[]; clientKey: string; adminToken: string; broker: string };
      assert.deepEqual(found.envKeys, runtime === "deno" ? ["ERR NotCapable"] : [], "the worker's environment is empty (Deno: not even readable)");
      assert.match(found.clientKey, /^ERR /, "no broker key on disk");
      assert.match(found.broker, /Authorization Violation|^ERR /, `the broker refuses a connection without the host's key: ${found.broker}`);
      const conf = await readFile(join(dataDir, "nats", "nats-server.conf"), "utf8");
      assert.doesNotMatch(conf, /\bSU[A-Z2-7]{50,}/, "no nkey seed in the server config");
      // Deno: workers without permissions; Node: the handler process may read only the handler
      // builds (permission model); Bun: the same, by Landlock, and no TCP at all.
      if (runtime === "deno") assert.match(found.adminToken, /^ERR NotCapable/, "Deno: no file access");
      else if (runtime === "node") assert.match(found.adminToken, /^ERR ERR_ACCESS_DENIED/, "Node: the handler process cannot read the data directory");
      else {
        assert.equal(found.adminToken, "ERR EACCES", "Bun: Landlock keeps the data directory out of reach");
        assert.equal(found.broker, "ERR EACCES", "Bun: Landlock refuses the TCP connection itself");
        assert.match(host.logs(), /Bun handler process: Landlock ABI \d+: reads limited to the handler builds, no file writes, no TCP/);
      }
      console.log(`${runtime}: env ${found.envKeys.length} keys; client.nk ${found.clientKey.slice(0, 10)}; broker: ${found.broker.slice(0, 60)}; admin.token ${found.adminToken.startsWith("ERR") ? found.adminToken : "READABLE"}`);
    } finally {
      await host.stop();
    }
  });
}

test("on Bun, a handler that asks for net runs where TCP is allowed; one that does not, where it is not", async () => {
  const probe = (name: string, net: boolean) => `
import { defineHandler } from "outpost/handler";
export default defineHandler({
  topic: "${name}",
  ${net ? "permissions: { net: true }," : ""}
  async handle(r, ctx) {
    const net = await import("node:net");
    const got = await new Promise((resolve) => {
      const s = net.connect(r.port, "127.0.0.1", () => { s.destroy(); resolve("connected"); });
      s.on("error", (e) => resolve("ERR " + (e.code ?? e.name)));
    });
    ctx.log("${name.toUpperCase()} " + got);
  },
});
`;
  const host = await startHost({ runtime: "bun", workers: { "withnet.mjs": probe("withnet", true), "nonet.mjs": probe("nonet", false) } });
  try {
    const port = Number(new URL(host.url).port);
    for (const t of ["withnet", "nonet"]) assert.equal((await ingest(host.url, t, JSON.stringify({ port }), "application/json")).status, 202);
    await waitFor(() => /WITHNET \S+/.test(host.logs()) && /NONET \S+/.test(host.logs()), 20_000, "both probes");
    assert.match(host.logs(), /WITHNET connected/);
    assert.match(host.logs(), /NONET ERR EACCES/);
    assert.match(host.logs(), /Bun handler process for handlers that ask for net: Landlock ABI \d+: reads limited to the handler builds, no file writes, no signals/);
  } finally {
    await host.stop();
  }
});

test("the host's own broker user may do only what the host needs: no $SYS, nothing outside Outpost's subjects", async () => {
  const host = await startHost({ workers: { "probe.mjs": `import { defineHandler } from "outpost/handler"; export default defineHandler({ topic: "probe", async handle() {} });` } });
  const { nc, jsm } = await embeddedJsm(host.dataDir);
  try {
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(String((s as { error?: Error }).error?.message ?? s.type));
    })();
    const denied = await new Promise<string>((resolve) => {
      nc.subscribe("$SYS.>", { callback: (e) => resolve(e ? e.message : "delivered") });
      setTimeout(() => resolve("no answer"), 3_000);
    });
    assert.match(denied, /Permissions Violation for Subscription to "\$SYS\.>"/);
    nc.publish("elsewhere.subject", new Uint8Array(1));
    await nc.flush();
    await waitFor(() => errors.some((e) => /Permissions Violation for Publish to "elsewhere\.subject"/.test(e)), 5_000, "the publish refused");
    // What it needs still works: the JetStream API.
    assert.equal((await jsm.streams.info("INGEST")).config.name, "INGEST");
  } finally {
    await nc.close();
    await host.stop();
  }
});
