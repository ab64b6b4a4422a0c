/**
 * The example handlers in workers/, driven as the README's tour drives them (HTTP CBOR, JSON,
 * SenML, and MQTT with mosquitto_pub): what each of them stores.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { embeddedJsm, freePort, ingest, ROOT, startHost, streamMessages, waitFor, type TestHost } from "../_harness.ts";

describe("the example handlers of workers/, as the README's tour uses them", () => {
  let host: TestHost;
  let mqttPort: number;
  before(async () => {
    mqttPort = await freePort();
    host = await startHost({ workersDir: join(ROOT, "workers"), args: ["--mqtt-port", String(mqttPort), "--no-watch"] });
  });
  after(async () => {
    await host?.stop();
  });

  const outbox = async (subject: string, n: number) => {
    const { nc, jsm } = await embeddedJsm(host.dataDir);
    try {
      return await waitFor(async () => {
        const m = await streamMessages(jsm, "OUTBOX", subject);
        return m.length >= n ? m : undefined;
      }, 20_000, `${n} on ${subject}`);
    } finally {
      await nc.close();
    }
  };

  test("the tour's CBOR reading raises the overheat alert; its bad reading is 400", async () => {
    const cbor = Buffer.from("a266" + Buffer.from("sensor").toString("hex") + "6273316763656c73697573fb4055600000000000", "hex");
    assert.equal((await ingest(host.url, "temperature", cbor, "application/cbor")).status, 202);
    const bad = await ingest(host.url, "temperature", '{"sensor":"s1","celsius":"hot"}', "application/json");
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error, "invalid_reading");
    const [alert] = await outbox("out.alerts.overheat", 1);
    assert.equal(alert!.value.sensor, "s1");
    assert.equal(alert!.value.celsius, 85.5);
  });

  test("the tour's SenML pack: power-meter publishes the overvoltage of the voltage record", async () => {
    const r = await ingest(host.url, "power", '[{"bn":"urn:dev:ow:10e2073a01080063:","bu":"V","n":"voltage","v":253.4},{"n":"current","u":"A","v":1.2}]', "application/senml+json");
    assert.equal(r.status, 202, JSON.stringify(r.json));
    assert.equal(r.json.accepted, 2);
    const [m] = await outbox("out.power.overvoltage", 1);
    assert.equal(m!.value.name, "urn:dev:ow:10e2073a01080063:voltage");
    assert.equal(m!.value.volts, 253.4);
    await waitFor(() => /\[power-meter\] urn:dev:ow:10e2073a01080063:voltage: 253\.4 V outside 230 V ±10 % → out\.power\.overvoltage/.test(host.logs()), 10_000, "the README's log line");
  });

  test("the tour's mosquitto_pub line reaches sensor-stats and temperature-alert", async () => {
    await promisify(execFile)("mosquitto_pub", ["-p", String(mqttPort), "-t", "ingest/temperature", "-m", '{"sensor":"s9","celsius":99}']);
    const alerts = await outbox("out.alerts.overheat", 2);
    assert.deepEqual(alerts.map((a) => a.value.sensor), ["s1", "s9"]);
  });
});
