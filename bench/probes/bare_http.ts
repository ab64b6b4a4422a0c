/**
 * The HTTP ceiling: the host's own serve() (Deno.serve, Bun.serve, @hono/node-server) with a
 * handler that reads the body and answers 202, nothing else. Prints `{"port":N}` when listening.
 */
import process from "node:process";
import { serve } from "../../src/runtime/serve.ts";

const s = await serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: async (req) => {
    await req.arrayBuffer();
    return new Response('{"accepted":1}', { status: 202, headers: { "content-type": "application/json" } });
  },
});
process.stdout.write(`${JSON.stringify({ port: s.port })}\n`);
process.on("SIGTERM", () => void s.close().finally(() => process.exit(0)));
