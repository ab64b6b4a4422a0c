import { readFile } from "node:fs/promises";
import { credsAuthenticator, nkeyAuthenticator, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { Logger } from "../util/log.ts";

/** The broker did not answer within the start-up timeout. */
export class BrokerUnreachableError extends Error {
  override name = "BrokerUnreachableError";
}

/** How to reach the broker. */
export interface BrokerTarget {
  servers: string;
  user?: string | undefined;
  pass?: string | undefined;
  token?: string | undefined;
  credsFile?: string | undefined;
  /** An nkey seed (the embedded server's client key). */
  nkeySeed?: string | undefined;
}

/** A live connection with its JetStream handles and a cheap status probe. */
export interface Broker {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Copies of each stream and bucket Outpost creates (`--replicas`; 1 unless the host says). */
  replicas?: number;
  /** True while the client holds a connection (false while reconnecting). */
  connected(): boolean;
  close(): Promise<void>;
}

/**
 * Connect to NATS, reconnecting forever in the background.
 * @param target servers and credentials
 * @param log where connection changes are reported
 */
export async function connectBroker(target: BrokerTarget, log: Logger, timeoutMs?: number): Promise<Broker> {
  const connecting = connect({
    servers: target.servers.split(",").map((s) => s.trim()),
    name: "outpost",
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    timeout: 5_000,
    // An Error per request for async stack traces costs ~5% of ingest CPU; our errors say enough.
    noAsyncTraces: true,
    ...(target.user !== undefined ? { user: target.user, pass: target.pass ?? "" } : {}),
    ...(target.token !== undefined ? { token: target.token } : {}),
    ...(target.credsFile ? { authenticator: credsAuthenticator(await readFile(target.credsFile)) } : {}),
    ...(target.nkeySeed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(target.nkeySeed)) } : {}),
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const nc = timeoutMs === undefined ? await connecting : await Promise.race([
    connecting,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // The attempt goes on in the background: close it once it connects, if it ever does.
        void connecting.then((c) => c.close(), () => {});
        reject(new BrokerUnreachableError(
          `Cannot reach NATS at ${target.servers.replace(/\/\/[^@/]*@/g, "//***@")} within ${timeoutMs} ms: check that nats-server runs and listens there, ` +
            "that this machine can reach it, and the credentials (--nats-user/--nats-pass, --nats-token or --nats-creds)",
        ));
      }, timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  let up = true;
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        up = false;
        log.warn("lost the connection to nats-server; readings are refused with 503 until it is back");
      } else if (s.type === "reconnect") {
        up = true;
        log.info("reconnected to nats-server");
      }
    }
  })().catch(() => {});
  const jsm = await jetstreamManager(nc, { timeout: 5_000 });
  const js = jetstream(nc, { timeout: 5_000 });
  return {
    nc,
    js,
    jsm,
    connected: () => up && !nc.isClosed(),
    close: async () => {
      if (nc.isClosed()) return;
      // A server that does not answer never completes a drain: give it 3 s.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const drained = await Promise.race([
        nc.drain().then(() => true, () => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 3_000))),
      ]);
      clearTimeout(timer);
      if (!drained) await nc.close().catch(() => {});
    },
  };
}
