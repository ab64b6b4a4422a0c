/** The core end-to-end scenario, shared by the source (e2e) and single-file suites. */
import assert from "node:assert/strict";
import { encodeCbor } from "../src/codec/cbor.ts";
import { ingest, streamMessages, waitFor, type TestHost, type TestNats } from "./_harness.ts";

/** The handler `coreScenario` talks to (plain JavaScript: the single file loads it without esbuild). */
export const ECHO_HANDLER = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "e2e",
  schema: v.object({ n: v.number(), bytes: v.optional(v.instance(Uint8Array)) }),
  concurrency: 4,
  async handle(r, ctx) {
    await ctx.publish("echo", { n: r.n, bytes: r.bytes, attempt: ctx.attempt, id: ctx.id, topic: ctx.topic, aborted: ctx.signal.aborted });
  },
});
`;

/**
 * POST one CBOR reading, a CBOR sequence of two and a JSON array of two to topic `e2e`, whose
 * handler publishes each reading to `out.echo`; assert all five arrive, bytes intact.
 * @returns the handler's outputs by reading number, and the stream sequences in posting order
 */
export async function coreScenario(host: TestHost, nats: TestNats): Promise<{ byN: Map<number, any>; seqs: number[]; count: number }> {
  const bytes = new Uint8Array([0, 1, 2, 254, 255]);
  const one = await ingest(host.url, "e2e", encodeCbor({ n: 1, bytes }), "application/cbor");
  const seq = await ingest(host.url, "e2e", new Uint8Array([...encodeCbor({ n: 2 }), ...encodeCbor({ n: 3 })]), "application/cbor-seq");
  const json = await ingest(host.url, "e2e", JSON.stringify([{ n: 4 }, { n: 5 }]), "application/json");
  assert.deepEqual([one.status, seq.status, json.status], [202, 202, 202]);
  const seqs = [...one.json.results, ...seq.json.results, ...json.json.results].map((r: { seq: number }) => r.seq);
  const out = await waitFor(async () => {
    const m = await streamMessages(nats.jsm, "OUTBOX", "out.echo");
    return m.length >= 5 ? m : undefined;
  }, 20_000, "5 echoes in OUTBOX");
  const byN = new Map(out.map((m) => [m.value.n as number, m.value]));
  assert.deepEqual([...byN.keys()].sort(), [1, 2, 3, 4, 5]);
  assert.deepEqual(byN.get(1).bytes, bytes, "bytes survive CBOR end to end");
  for (const v of byN.values()) assert.equal(v.topic, "e2e");
  return { byN, seqs, count: out.length };
}
