/**
 * MQTT ingest in a host: the listener's config from the sensor registry (kept in step when the
 * registry changes), `MQTT_IN` created before the listener first opens, and the bridge.
 * @module
 */
import { mkdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connectBroker, type Broker } from "../broker/connect.ts";
import { startNatsServer, type EmbeddedServer, type EmbeddedServerOptions } from "../broker/nats_server.ts";
import { ConfigError } from "../errors.ts";
import type { TlsPaths } from "../http/tls.ts";
import { mqttLogins, type SensorRegistry } from "../sensors/registry.ts";
import type { Logger } from "../util/log.ts";
import { ensureMqttStream } from "./bridge.ts";
import type { MqttServerConfig } from "./server_config.ts";

/** The share of the file store `MQTT_IN` may use (INGEST, OUTBOX and DLQ take 7/8). */
export const MQTT_STREAM_SHARE = 1 / 16;

/** `--mqtt-prefix` as a subject: `ingest`, `site/a` → `site.a`. */
export function prefixSubject(prefix: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, "");
  if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(p)) {
    throw new ConfigError(`--mqtt-prefix ${JSON.stringify(prefix)}: use levels of letters, digits, _ and - separated by / (no wildcards)`);
  }
  return p.replace(/\//g, ".");
}

/** The MQTT listener's config for the sensors now in the registry. */
export function mqttServerConfig(o: {
  host: string;
  port: number;
  prefix: string;
  sensors: SensorRegistry;
  /** Ingest needs a credential: no anonymous MQTT user. */
  required: boolean;
  tls: TlsPaths | undefined;
  anonymousPassword: string;
  log: Logger;
}): MqttServerConfig {
  const { logins, without } = mqttLogins(o.sensors.sensors);
  if (without.length) {
    o.log.warn(`sensor(s) ${without.join(", ")} have no MQTT password yet (their tokens predate MQTT): ` +
      "outpost sensors rotate ID gives each a token that works over HTTP and MQTT");
  }
  return {
    listen: `${o.host.includes(":") ? `[${o.host}]` : o.host}:${o.port}`,
    prefix: prefixSubject(o.prefix),
    sensors: logins,
    anonymous: o.required ? undefined : o.anonymousPassword,
    tls: o.tls ? { certFile: o.tls.certFile, keyFile: o.tls.keyFile } : undefined,
  };
}

/**
 * nats-server acknowledges a QoS 1 publish once its subscribers got it, whether a stream stored it
 * or not: `MQTT_IN` must exist before the listener first opens. On the first start with MQTT,
 * start the server without it once, create the stream, and stop (the mark lives in the store, so
 * a store wiped later is prepared again).
 */
export async function prepareMqttStore(serverOpts: EmbeddedServerOptions, maxBytes: number, maxMsgSize: number, log: Logger): Promise<void> {
  const mark = join(serverOpts.dataDir, "jetstream", ".outpost-mqtt-in");
  if (await stat(mark).then(() => true, () => false)) return;
  log.info("first start with MQTT: creating MQTT_IN before the MQTT listener opens");
  const srv: EmbeddedServer = await startNatsServer({ ...serverOpts, mqtt: undefined });
  let broker: Broker | undefined;
  try {
    broker = await connectBroker({ servers: srv.url, nkeySeed: srv.seed }, log);
    await ensureMqttStream(broker, maxBytes, maxMsgSize);
  } finally {
    await broker?.nc.close().catch(() => {});
    await srv.stop();
  }
  await mkdir(join(serverOpts.dataDir, "jetstream"), { recursive: true });
  await writeFile(mark, "MQTT_IN exists in this store\n");
}
