/**
 * Ceilings with the host's own NATS client on the host's runtime, no HTTP:
 * `publish` (raw JetStream publish, `window` in flight) and `pubsub` (the same publishing while
 * a pull consumer acks every message, as a handler with nothing to do would).
 */
import { connect } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { cborReading } from "../lib/payload.ts";
import { finish, probeArgs } from "./_args.ts";

interface _Args {
  mode: "publish" | "pubsub";
  url: string;
  subject: string;
  stream: string;
  seconds: number;
  window: number;
  concurrency: number;
}

const a = probeArgs<_Args>();
const nc = await connect({ servers: a.url });
const js = jetstream(nc, { timeout: 5_000 });
const data = cborReading(7);
let acked = 0;
let consumerLoop: Promise<void> | undefined;
let stopConsumer = () => {};
if (a.mode === "pubsub") {
  const jsm = await jetstreamManager(nc);
  const durable = "bench-ceiling";
  await jsm.consumers.delete(a.stream, durable).catch(() => false);
  await jsm.consumers.add(a.stream, {
    durable_name: durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.New,
    filter_subject: a.subject, max_ack_pending: Math.max(1_000, a.concurrency * 4),
  });
  const c = await js.consumers.get(a.stream, durable);
  const msgs = await c.consume({ max_messages: a.concurrency });
  stopConsumer = () => void msgs.stop();
  consumerLoop = (async () => {
    for await (const m of msgs) {
      m.ack();
      acked++;
    }
  })();
}
await new Promise((r) => setTimeout(r, 200));
const ackedBefore = acked;
let published = 0;
const t0 = performance.now();
const end = t0 + a.seconds * 1_000;
await Promise.all(Array.from({ length: a.window }, async () => {
  while (performance.now() < end) {
    await js.publish(a.subject, data);
    published++;
  }
}));
const elapsed = (performance.now() - t0) / 1_000;
const ackedInWindow = acked - ackedBefore;
stopConsumer();
await Promise.race([consumerLoop, new Promise((r) => setTimeout(r, 1_000))]);
await nc.close();
finish({
  mode: a.mode,
  seconds: elapsed,
  published,
  publishPerSec: published / elapsed,
  consumed: ackedInWindow,
  consumedPerSec: ackedInWindow / elapsed,
  window: a.window,
  bytes: data.length,
});
