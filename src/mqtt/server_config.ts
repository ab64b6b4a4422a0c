/**
 * The nats-server configuration that turns on its MQTT listener (MQTT 3.1.1, QoS 0 and 1) for
 * sensors, without letting a sensor reach the host's streams:
 * - the host's user moves into an account of its own, `OUTPOST` (its streams with it);
 * - each sensor of the registry gets an account of its own, with one MQTT user (name: the sensor
 *   id, password: its newest token, checked by nats-server against a bcrypt hash) that may
 *   publish only to its topics; open ingest adds an `ANONYMOUS` account that MQTT clients without
 *   credentials land in (`no_auth_user`);
 * - each such account exports `<prefix>.>` as a stream, and `OUTPOST` imports it below
 *   `mqtt.<sensor>.`: a sensor's `ingest/temperature` arrives at the host as
 *   `mqtt.<sensor>.ingest.temperature`, so the host knows who sent it (JetStream keeps no
 *   publisher identity), and nothing a sensor sends can land in `ingest.>` unvalidated.
 * An account per sensor because in nats-server 2.9 it is the only way the subject can say who
 * published (measured: a shared account's service import with `share: true` carries the MQTT
 * password in clear text in `Nats-Request-Info`, and JetStream strips that header anyway).
 * @module
 */

/** The account of the host's user when MQTT is on. */
export const HOST_ACCOUNT = "OUTPOST";
/** The subject token of readings from MQTT clients without credentials (open ingest). */
export const ANONYMOUS_TOKEN = "~anonymous";
/** Subjects of MQTT readings in the host's account (the `MQTT_IN` stream's). */
export const MQTT_SUBJECTS = "mqtt.>";

/** What the MQTT listener needs. */
export interface MqttServerConfig {
  /** `host:port` of the MQTT listener. */
  listen: string;
  /** The topic prefix as a subject (`ingest`, `site.a` for `site/a`). */
  prefix: string;
  /** Sensors that may connect: id, topic patterns, bcrypt hash of the newest token. */
  sensors: { id: string; topics: readonly string[]; bcrypt: string }[];
  /** A password for the anonymous MQTT user when ingest is open; undefined: credentials required. */
  anonymous: string | undefined;
  /** PEM files when MQTT should speak TLS (the host's --tls-cert/--tls-key). */
  tls?: { certFile: string; keyFile: string } | undefined;
}

/** The subject token that names a sensor (ids may hold `.` and `:`, which a token cannot). */
export function sensorToken(id: string): string {
  let b = "";
  for (const c of new TextEncoder().encode(id)) b += String.fromCharCode(c);
  return btoa(b).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The sensor id a subject token names, or undefined for the anonymous token (or garbage). */
export function sensorOfToken(token: string): string | undefined {
  if (token === ANONYMOUS_TOKEN) return undefined;
  try {
    const bin = atob(token.replace(/-/g, "+").replace(/_/g, "/"));
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}

const _q = (s: string) => JSON.stringify(s);

function _sensorAccount(name: string, user: string, password: string, publish: string[], prefix: string): string {
  // Each account's JetStream holds only nats-server's own MQTT state (sessions, retained
  // messages): capped, so a sensor cannot fill the device's store with retained messages.
  return `  ${_q(name)}: {
    jetstream: { max_file: 1048576, max_mem: 0 }
    exports: [ { stream: ${_q(`${prefix}.>`)} } ]
    users: [ { user: ${_q(user)}, password: ${_q(password)}, allowed_connection_types: ["MQTT"],
      permissions: { publish: { allow: ${JSON.stringify(publish)} }, subscribe: { deny: [">"] } } } ]
  }
`;
}

/**
 * The `accounts` block (replacing `authorization`) and the `mqtt` block.
 * @param hostUser the host's user entry as written in `users: [ … ]`
 */
export function mqttServerBlocks(hostUser: string, m: MqttServerConfig): string {
  const imports: string[] = [];
  let accounts = "";
  m.sensors.forEach((s, i) => {
    const account = `SENSOR_${i + 1}`;
    accounts += _sensorAccount(account, s.id, s.bcrypt, s.topics.map((t) => `${m.prefix}.${t}`), m.prefix);
    imports.push(`{ stream: { account: ${_q(account)}, subject: ${_q(`${m.prefix}.>`)} }, prefix: ${_q(`mqtt.${sensorToken(s.id)}`)} }`);
  });
  if (m.anonymous !== undefined) {
    accounts += _sensorAccount("ANONYMOUS", "anonymous", m.anonymous, [`${m.prefix}.>`], m.prefix);
    imports.push(`{ stream: { account: "ANONYMOUS", subject: ${_q(`${m.prefix}.>`)} }, prefix: ${_q(`mqtt.${ANONYMOUS_TOKEN}`)} }`);
  }
  const tls = m.tls ? `  tls { cert_file: ${_q(m.tls.certFile)}, key_file: ${_q(m.tls.keyFile)} }\n` : "";
  return `accounts {
  ${HOST_ACCOUNT}: {
    jetstream: enabled
    users: [ ${hostUser} ]
    imports: [ ${imports.join(",\n      ")} ]
  }
${accounts}}
mqtt {
  listen: ${_q(m.listen)}
${m.anonymous !== undefined ? '  no_auth_user: "anonymous"\n' : ""}${tls}}
`;
}
