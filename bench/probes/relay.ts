/**
 * The minimal relay, the floor a user gets for free: POST → `js.publish` → 202, with the host's
 * own serve() (Hono's node server, Deno.serve, Bun.serve) and the same NATS client, no
 * validation, no decoding, no isolation. Prints `{"port":N}` when listening.
 */
import process from "node:process";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { serve } from "../../src/runtime/serve.ts";
import { probeArgs } from "./_args.ts";

const a = probeArgs<{ url: string; subject: string }>();
const nc = await connect({ servers: a.url });
const js = jetstream(nc, { timeout: 5_000 });
const s = await serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: async (req) => {
    const body = new Uint8Array(await req.arrayBuffer());
    try {
      const ack = await js.publish(a.subject, body);
      return new Response(`{"accepted":1,"seq":${ack.seq}}`, { status: 202, headers: { "content-type": "application/json" } });
    } catch (e) {
      return new Response(JSON.stringify({ error: (e as Error).message }), { status: 503 });
    }
  },
});
process.stdout.write(`${JSON.stringify({ port: s.port })}\n`);
process.on("SIGTERM", () => void s.close().finally(() => void nc.close().finally(() => process.exit(0))));
