/**
 * The Node-RED peer: the tool most Raspberry Pi users already run, doing the nearest thing to
 * Outpost's job a flow does: `http in` → a `function` node with the same check as the handler's
 * schema → `http response` (202, or 400 for a reading that fails the check). No durability, no
 * isolation: a reading lives in the flow's memory until it is answered. Installed by the bench,
 * on first use, into `bench/.peers/node-red` (not a dependency of the project).
 */
import { spawn } from "node:child_process";
import { access, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freePort, type Procs, ROOT, waitFor } from "./procs.ts";

/** The Node-RED line that runs on Node 20. */
export const NODE_RED_VERSION = "4.1.8";
const _DIR = join(ROOT, "bench", ".peers", "node-red");
const _RED = join(_DIR, "node_modules", "node-red", "red.js");

/** The check of the reading, as the function node's body (the handler's schema, by hand). */
const _CHECK = `const r = msg.payload;
const num = (x) => typeof x === "number" && Number.isFinite(x);
if (r === null || typeof r !== "object" || typeof r.sensor !== "string" || !num(r.celsius) || !num(r.humidity) ||
    !num(r.pressure) || !num(r.battery) || !num(r.seq) || !num(r.at)) {
  msg.statusCode = 400;
  msg.payload = { error: "invalid_reading" };
  return msg;
}
msg.statusCode = 202;
msg.payload = { accepted: 1 };
return msg;`;

/**
 * Node-RED installed (the first time: `npm install` into bench/.peers/node-red, about 20 s and
 * 100 MB).
 * @returns the path of red.js, or the reason it is not there
 */
export async function ensureNodeRed(say: (s: string) => void): Promise<{ red: string; version: string } | { error: string }> {
  const have = async () => {
    try {
      await access(_RED);
      return (JSON.parse(await readFile(join(_DIR, "node_modules", "node-red", "package.json"), "utf8")) as { version: string }).version;
    } catch {
      return undefined;
    }
  };
  let version = await have();
  if (version !== NODE_RED_VERSION) {
    say(`peer: installing Node-RED ${NODE_RED_VERSION} into bench/.peers/node-red`);
    const out = await new Promise<{ code: number | null; text: string }>((res) => {
      const p = spawn("npm", ["install", "--prefix", _DIR, "--no-audit", "--no-fund", "--no-save", "--loglevel=error", `node-red@${NODE_RED_VERSION}`], { stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      p.stdout.on("data", (d) => (text += d));
      p.stderr.on("data", (d) => (text += d));
      const t = setTimeout(() => p.kill("SIGKILL"), 300_000);
      p.once("error", (e) => (text += String(e)));
      p.once("exit", (code) => (clearTimeout(t), res({ code, text })));
    });
    version = await have();
    if (out.code !== 0 || !version) return { error: `npm install node-red@${NODE_RED_VERSION} failed (${out.code}): ${out.text.trim().split("\n").slice(-3).join(" ")}` };
  }
  return { red: _RED, version };
}

/** Start Node-RED with the one flow; its editor and admin API are off. */
export async function startNodeRed(procs: Procs, red: string): Promise<{ url: string }> {
  const dir = await procs.tempDir("nodered");
  const port = await freePort();
  const flows = [
    { id: "bench-tab", type: "tab", label: "bench" },
    { id: "bench-in", type: "http in", z: "bench-tab", name: "", url: "/v1/ingest/park", method: "post", upload: false, wires: [["bench-check"]] },
    { id: "bench-check", type: "function", z: "bench-tab", name: "check", func: _CHECK, outputs: 1, wires: [["bench-out"]] },
    { id: "bench-out", type: "http response", z: "bench-tab", name: "", statusCode: "", headers: {}, wires: [] },
  ];
  await writeFile(join(dir, "flows.json"), JSON.stringify(flows));
  await writeFile(join(dir, "settings.js"), `module.exports = ${JSON.stringify({
    uiPort: port, uiHost: "127.0.0.1", httpAdminRoot: false, flowFile: "flows.json", userDir: dir,
    credentialSecret: false, logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { tours: false }, telemetry: { enabled: false }, diagnostics: { enabled: false },
  })};\n`);
  procs.spawn("node-red", ["node", red, "--settings", join(dir, "settings.js"), "--userDir", dir]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/v1/ingest/park`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status === 400, 60_000, "Node-RED's flow");
  return { url };
}
