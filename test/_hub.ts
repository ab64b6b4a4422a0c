/** A hub nats-server on loopback for the fleet and store-and-forward tests. */
import { spawn, type ChildProcess } from "node:child_process";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { findNatsServer } from "../src/broker/nats_server.ts";
import { freePort, join, rm, tempDir, waitFor, writeFile } from "./_harness.ts";

/** A hub nats-server: JetStream in domain `hub`, a leafnode port, all on loopback. */
export interface Hub {
  url: string;
  leafUrl: string;
  nc: NatsConnection;
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startHub(): Promise<Hub> {
  const dir = await tempDir("outpost-hub-");
  const [port, leaf] = [await freePort(), await freePort()];
  const conf = join(dir, "hub.conf");
  await writeFile(conf, `listen: "127.0.0.1:${port}"\nserver_name: "hub"\n` +
    `jetstream { store_dir: ${JSON.stringify(join(dir, "js"))}, domain: "hub", max_file_store: 268435456 }\n` +
    `leafnodes { listen: "127.0.0.1:${leaf}" }\n`);
  const bin = await findNatsServer();
  let proc: ChildProcess | undefined;
  const start = async () => {
    proc = spawn(bin, ["-c", conf], { stdio: "ignore" });
    await waitFor(async () => {
      const c = await connect({ servers: `127.0.0.1:${port}`, reconnect: false });
      await c.close();
      return true;
    }, 10_000, "the hub nats-server");
  };
  const kill = async () => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
  };
  await start();
  const nc = await connect({ servers: `127.0.0.1:${port}`, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  return {
    url: `nats://127.0.0.1:${port}`, leafUrl: `nats-leaf://127.0.0.1:${leaf}`, nc, kill, start,
    stop: async () => {
      await nc.close().catch(() => {});
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

