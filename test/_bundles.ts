/** Helpers of the OTA bundle tests: keys, handler sources, bundles made with the real `packDirectory`. */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { generateKeyPair, readSigningKey, type SigningKey } from "../src/ota/keys.ts";
import { packDirectory } from "../src/ota/pack.ts";
import { tempDir } from "./_harness.ts";

export interface TestKey {
  id: string;
  pubFile: string;
  signing: SigningKey;
}

export async function makeKey(name = "dev"): Promise<TestKey> {
  const dir = await tempDir("outpost-keys-");
  const k = await generateKeyPair();
  await writeFile(join(dir, `${name}.key`), k.privateText);
  await writeFile(join(dir, `${name}.pub`), k.publicText);
  return { id: k.id, pubFile: join(dir, `${name}.pub`), signing: await readSigningKey(join(dir, `${name}.key`)) };
}

/** A handler of topic `ota` that publishes `{seq, v}` to `out.ota`, or throws when `fail` is set. */
export function otaHandler(v: string, opts: { fail?: boolean; delayMs?: number } = {}): string {
  return `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "ota",
  schema: v.object({ n: v.number() }),
  concurrency: 4,
  timeoutMs: 2000,
  retry: { maxAttempts: 2, backoff: [200] },
  async handle(r, ctx) {
    ${opts.delayMs ? `await new Promise((res) => setTimeout(res, ${opts.delayMs}));` : ""}
    ${opts.fail ? `throw new Error("release ${v} is broken");` : ""}
    await ctx.publish("ota", { seq: ctx.seq, n: r.n, v: ${JSON.stringify(v)}, attempt: ctx.attempt });
  },
});
`;
}

/** Pack handler sources into a signed bundle. */
export async function makeBundle(o: { release: number; version?: string; handlers: Record<string, string>; keys: TestKey[]; expiresInMs?: number; now?: number }): Promise<Uint8Array> {
  const dir = await tempDir("outpost-pack-src-");
  await mkdir(dir, { recursive: true });
  for (const [n, src] of Object.entries(o.handlers)) await writeFile(join(dir, n), src);
  const { bytes } = await packDirectory({
    dir, name: "ota", version: o.version ?? `1.0.${o.release}`, release: o.release, expiresInMs: o.expiresInMs ?? 3_600_000,
    keys: o.keys.map((k) => k.signing), ...(o.now !== undefined ? { now: o.now } : {}),
  });
  return bytes;
}

/** POST a bundle to a host. */
export async function push(url: string, bytes: Uint8Array, token = "tok"): Promise<{ status: number; json: any }> {
  const r = await fetch(`${url}/v1/bundles`, { method: "POST", body: bytes as BodyInit, headers: { authorization: `Bearer ${token}`, "content-type": "application/vnd.outpost.bundle" } });
  return { status: r.status, json: await r.json() };
}

/** GET /v1/bundles. */
export async function bundles(url: string, token = "tok"): Promise<any> {
  return await (await fetch(`${url}/v1/bundles`, { headers: { authorization: `Bearer ${token}` } })).json();
}
