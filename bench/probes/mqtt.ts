/**
 * MQTT ingest load: the `mqtt` npm client publishes `messages` QoS 1 readings with `window` in
 * flight to a host's MQTT listener; the figure is readings stored in INGEST per second (the
 * host's `outpost_mqtt_messages_total{outcome="stored"}`), from the first publish until the last
 * is stored, next to the PUBACK rate.
 */
import mqtt from "mqtt";
import { cborReading } from "../lib/payload.ts";
import { finish, probeArgs } from "./_args.ts";

interface _Args {
  mqttPort: number;
  hostUrl: string;
  auth: Record<string, string>;
  topic: string;
  messages: number;
  window: number;
}

const a = probeArgs<_Args>();
const stored = async (): Promise<number> => {
  const text = await (await fetch(`${a.hostUrl}/metrics`, { headers: a.auth })).text();
  let n = 0;
  for (const m of text.matchAll(/^outpost_mqtt_messages_total\{[^}]*outcome="stored"[^}]*\} (\d+)/gm)) n += Number(m[1]);
  return n;
};
const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${a.mqttPort}`, { reconnectPeriod: 0 });
const data = Buffer.from(cborReading(7));
const before = await stored();
const t0 = performance.now();
let next = 0;
const lane = async () => {
  while (next < a.messages) {
    next++;
    await c.publishAsync(`ingest/${a.topic}`, data, { qos: 1 });
  }
};
await Promise.all(Array.from({ length: a.window }, lane));
const pubSec = (performance.now() - t0) / 1_000;
for (const until = Date.now() + 120_000; (await stored()) - before < a.messages && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
const storeSec = (performance.now() - t0) / 1_000;
const done = (await stored()) - before;
await c.endAsync();
finish({ messages: a.messages, window: a.window, stored: done, pubackPerSec: a.messages / pubSec, storedPerSec: done / storeSec });
