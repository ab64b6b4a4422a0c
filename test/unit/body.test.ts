/**
 * Request bodies outside Node's socket path (Deno, Bun, and any `Request`): the limit holds with and
 * without a declared length, and a body that stops arriving ends in BodyTimeoutError.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BodyLimitError, BodyTimeoutError, readBody } from "../../src/http/body.ts";

const _post = (body: BodyInit, headers: Record<string, string> = {}) =>
  new Request("http://127.0.0.1/v1/ingest/t", { method: "POST", body, headers, duplex: "half" } as RequestInit);

/** A stream that sends `chunks`, then stays open when `stall` (a client that stopped sending). */
const _stream = (chunks: Uint8Array[], stall = false) => new ReadableStream<Uint8Array>({
  start(c) {
    for (const x of chunks) c.enqueue(x);
    if (!stall) c.close();
  },
});

test("a body with a declared length is read whole", async () => {
  const got = await readBody(_post(new Uint8Array([1, 2, 3]), { "content-length": "3" }), 10);
  assert.deepEqual([...got], [1, 2, 3]);
});

test("a declared length past the limit is refused before anything is read", async () => {
  await assert.rejects(readBody(_post(new Uint8Array(20), { "content-length": "20" }), 10), BodyLimitError);
});

test("a chunked body is counted chunk by chunk and refused past the limit", async () => {
  const ok = await readBody(_post(_stream([new Uint8Array([1, 2]), new Uint8Array([3])])), 10);
  assert.deepEqual([...ok], [1, 2, 3]);
  await assert.rejects(readBody(_post(_stream([new Uint8Array(6), new Uint8Array(6)])), 10), BodyLimitError);
});

test("a body that stops arriving times out, with or without a declared length", async () => {
  const t0 = Date.now();
  await assert.rejects(readBody(_post(_stream([new Uint8Array(2)], true), { "content-length": "5" }), 10, undefined, 150), (e: Error) => {
    assert.ok(e instanceof BodyTimeoutError);
    assert.equal(e.message, "The request body did not arrive within 0.15 s");
    return true;
  });
  await assert.rejects(readBody(_post(_stream([new Uint8Array(2)], true)), 10, undefined, 150), BodyTimeoutError);
  assert.ok(Date.now() - t0 < 5_000, "both ended at their deadline");
});
