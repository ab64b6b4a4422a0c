/**
 * What nats-server does with a damaged JetStream store, measured: store N messages in a stream
 * configured like INGEST, stop the server cleanly, damage the stream's files one way, start it
 * again, and count what is left and what the server said. Run with
 *   node --import ./test/_register.mjs scripts/measure-store-damage.ts [N]
 * (it uses the nats-server on PATH, loopback only, and a temporary directory).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { findNatsServer, natsServerVersion } from "../src/broker/nats_server.ts";

const N = Number(process.argv[2] ?? 20_000);
const bin = await findNatsServer();

async function server(dir: string, port: number): Promise<{ proc: ChildProcess; log: () => string }> {
  let out = "";
  const proc = spawn(bin, ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (d) => (out += d));
  proc.stderr!.on("data", (d) => (out += d));
  for (let i = 0; i < 100 && !/Server is ready/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
  return { proc, log: () => out };
}

async function stop(p: ChildProcess): Promise<void> {
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  await exited;
}

type Damage = { name: string; apply(streamDir: string): Promise<void> };

const damages: Damage[] = [
  { name: "none (clean restart)", apply: async () => {} },
  {
    name: "1.blk truncated to half",
    apply: async (d) => {
      const f = join(d, "msgs", "1.blk");
      await truncate(f, Math.floor((await stat(f)).size / 2));
    },
  },
  {
    name: "20 bytes of 1.blk flipped",
    apply: async (d) => {
      const f = join(d, "msgs", "1.blk");
      const b = await readFile(f);
      for (let i = 0; i < 20; i++) {
        const at = Math.floor(((i + 1) / 21) * b.length);
        b[at] = b[at]! ^ 0xff;
      }
      await writeFile(f, b);
    },
  },
  {
    name: "20 bytes flipped and index files removed",
    apply: async (d) => {
      await damages[2]!.apply(d);
      await damages[4]!.apply(d);
    },
  },
  {
    name: "index files removed (msgs/*.idx, *.fss, index.db)",
    apply: async (d) => {
      for (const f of await readdir(join(d, "msgs"))) if (!f.endsWith(".blk")) await rm(join(d, "msgs", f), { force: true });
    },
  },
  { name: "stream directory removed", apply: async (d) => void (await rm(d, { recursive: true, force: true })) },
];

console.log(`nats-server ${await natsServerVersion(bin)}; ${N} messages of ~40 bytes in a file stream like INGEST\n`);
console.log("| damage | messages after restart | first..last seq | readable by a consumer | what the server logged |");
console.log("|---|---:|---|---:|---|");
for (const dmg of damages) {
  const dir = await mkdtemp(join(tmpdir(), "outpost-damage-"));
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  let s = await server(dir, port);
  let nc = await connect({ servers: `127.0.0.1:${port}` });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "INGEST", subjects: ["ingest.>"], storage: StorageType.File, retention: RetentionPolicy.Limits });
  const js = jetstream(nc);
  const body = new TextEncoder().encode(JSON.stringify({ sensor: "s1", celsius: 21.5, n: 0 }));
  for (let i = 0; i < N; i += 500) await Promise.all(Array.from({ length: Math.min(500, N - i) }, () => js.publish("ingest.t", body)));
  await nc.close();
  await stop(s.proc);
  const streamDir = join(dir, "jetstream", "$G", "streams", "INGEST");
  await dmg.apply(streamDir);
  s = await server(dir, port);
  nc = await connect({ servers: `127.0.0.1:${port}` });
  const jsm2 = await jetstreamManager(nc);
  const state = await jsm2.streams.info("INGEST").then((i) => i.state, () => undefined);
  let readable = 0;
  if (state && state.messages > 0) {
    const c = await jetstream(nc).consumers.get("INGEST");
    const it = await c.consume({ max_messages: 1000, idle_heartbeat: 500 });
    const idle = setInterval(() => void (Date.now() - last > 1_500 && it.stop()), 250);
    let last = Date.now();
    for await (const m of it) {
      readable++;
      last = Date.now();
      if (m.seq >= state.last_seq) break;
    }
    clearInterval(idle);
  }
  const said = s.log().split("\n").filter((l) => /\[(WRN|ERR)\]/.test(l) && !/Plaintext|predates/.test(l)).map((l) => l.replace(/^\[\d+\] \S+ \S+ /, ""));
  console.log(`| ${dmg.name} | ${state ? state.messages : "stream gone"} | ${state ? `${state.first_seq}..${state.last_seq}` : "—"} | ${readable} | ${said.slice(0, 2).join("; ") || "nothing"}${said.length > 2 ? ` (+${said.length - 2} more)` : ""} |`);
  await nc.close();
  await stop(s.proc);
  await rm(dir, { recursive: true, force: true });
}
