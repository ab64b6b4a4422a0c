/** A three-node nats-server cluster with clustered JetStream, on loopback, for the scale-out tests. */
import { spawn, type ChildProcess } from "node:child_process";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { findNatsServer } from "../src/broker/nats_server.ts";
import { freePort, join, rm, tempDir, waitFor, writeFile } from "./_harness.ts";

export interface Cluster {
  /** `nats://a,nats://b,nats://c`, for `--nats`. */
  urls: string;
  ports: number[];
  nc: NatsConnection;
  jsm: JetStreamManager;
  /** SIGKILL node i (0-based). */
  kill(i: number): Promise<void>;
  start(i: number): Promise<void>;
  /** The node index of server name `n1`… */
  index(serverName: string): number;
  stop(): Promise<void>;
}

export async function startCluster(): Promise<Cluster> {
  const dir = await tempDir("outpost-cluster-");
  const ports = [await freePort(), await freePort(), await freePort()];
  const routes = [await freePort(), await freePort(), await freePort()];
  const bin = await findNatsServer();
  const procs: (ChildProcess | undefined)[] = [];
  const confs: string[] = [];
  for (let i = 0; i < 3; i++) {
    const conf = join(dir, `n${i + 1}.conf`);
    await writeFile(conf, `server_name: "n${i + 1}"\nlisten: "127.0.0.1:${ports[i]}"\n` +
      `jetstream { store_dir: ${JSON.stringify(join(dir, `js${i + 1}`))}, max_file_store: 1073741824, max_memory_store: 67108864 }\n` +
      `cluster { name: "c", listen: "127.0.0.1:${routes[i]}", routes: [${routes.map((p) => `"nats-route://127.0.0.1:${p}"`).join(", ")}] }\n`);
    confs.push(conf);
  }
  const start = async (i: number) => {
    procs[i] = spawn(bin, ["-c", confs[i]!], { stdio: "ignore" });
  };
  const kill = async (i: number) => {
    const p = procs[i];
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
  };
  for (let i = 0; i < 3; i++) await start(i);
  const urls = ports.map((p) => `nats://127.0.0.1:${p}`).join(",");
  const nc = await waitFor(async () => await connect({ servers: ports.map((p) => `127.0.0.1:${p}`), maxReconnectAttempts: -1, reconnectTimeWait: 100 }), 10_000, "the cluster");
  // Clustered JetStream answers once its meta group has a leader.
  const jsm = await waitFor(async () => {
    const m = await jetstreamManager(nc, { timeout: 2_000 });
    await m.getAccountInfo();
    return m;
  }, 30_000, "a JetStream meta leader");
  return {
    urls, ports, nc, jsm, kill, start,
    index: (name) => Number(name.slice(1)) - 1,
    stop: async () => {
      await nc.close().catch(() => {});
      for (let i = 0; i < 3; i++) await kill(i);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
