import { readFile } from "node:fs/promises";
import { sha256Hex } from "../util/hash.ts";
import { BundleFormatError } from "./errors.ts";

/** An Ed25519 public key the device trusts. */
export interface PublicKey {
  /** First 16 hex digits of the SHA-256 of the raw key. */
  id: string;
  raw: Uint8Array;
  key: CryptoKey;
}

/** An Ed25519 signing key, as written by `outpost keygen`. */
export interface SigningKey {
  id: string;
  key: CryptoKey;
}

const _ALG = { name: "Ed25519" } as const;
const _PUB_PREFIX = "ed25519:";

/**
 * Make an Ed25519 key pair with WebCrypto (no native addon).
 * @returns the private key file's text (JSON with a JWK) and the public key's text (`ed25519:<base64url>`)
 */
export async function generateKeyPair(): Promise<{ id: string; privateText: string; publicText: string }> {
  const pair = (await crypto.subtle.generateKey(_ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const id = await keyId(raw);
  const privateText = JSON.stringify({ type: "outpost-ed25519-private", id, jwk }, null, 2) + "\n";
  return { id, privateText, publicText: `${_PUB_PREFIX}${toBase64Url(raw)}\n` };
}

/**
 * The id of a raw public key: the first 16 hex digits of its SHA-256.
 * @param raw the 32-byte key
 */
export async function keyId(raw: Uint8Array): Promise<string> {
  return (await sha256Hex(raw)).slice(0, 16);
}

/**
 * Read a private key file written by `outpost keygen`.
 * @param path the `.key` file
 */
export async function readSigningKey(path: string): Promise<SigningKey> {
  let parsed: { type?: string; id?: string; jwk?: JsonWebKey };
  try {
    parsed = JSON.parse(await readFile(path, "utf8")) as typeof parsed;
  } catch (e) {
    throw new BundleFormatError(`Cannot read signing key ${path}: ${(e as Error).message}`);
  }
  if (parsed.type !== "outpost-ed25519-private" || !parsed.jwk || typeof parsed.id !== "string") {
    throw new BundleFormatError(`${path} is not an Outpost signing key (made by outpost keygen)`);
  }
  const key = await crypto.subtle.importKey("jwk", parsed.jwk, _ALG, false, ["sign"]);
  return { id: parsed.id, key };
}

/**
 * Parse one public key: inline `ed25519:<base64url>` text, or the path of a file holding it.
 * @param spec the text or path
 */
export async function readPublicKey(spec: string): Promise<PublicKey> {
  let text = spec.trim();
  if (!text.startsWith(_PUB_PREFIX)) {
    try {
      text = (await readFile(text, "utf8")).trim();
    } catch (e) {
      throw new BundleFormatError(`Cannot read public key ${spec}: ${(e as Error).message}`);
    }
  }
  const line = text.split("\n").map((l) => l.trim()).find((l) => l.startsWith(_PUB_PREFIX));
  const raw = line ? fromBase64Url(line.slice(_PUB_PREFIX.length)) : undefined;
  if (!raw || raw.length !== 32) throw new BundleFormatError(`${spec} is not an Ed25519 public key (ed25519:<base64url of 32 bytes>)`);
  const key = await crypto.subtle.importKey("raw", raw as Uint8Array<ArrayBuffer>, _ALG, false, ["verify"]);
  return { id: await keyId(raw), raw, key };
}

/**
 * Sign bytes.
 * @returns the 64-byte signature
 */
export async function sign(key: SigningKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign(_ALG, key.key, data as Uint8Array<ArrayBuffer>));
}

/** Whether `sig` is a valid signature of `data` by `key`. */
export async function verifySignature(key: PublicKey, sig: Uint8Array, data: Uint8Array): Promise<boolean> {
  try {
    return await crypto.subtle.verify(_ALG, key.key, sig as Uint8Array<ArrayBuffer>, data as Uint8Array<ArrayBuffer>);
  } catch {
    return false;
  }
}

/** Base64url without padding. */
export function toBase64Url(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Inverse of {@link toBase64Url}; undefined for invalid text. */
export function fromBase64Url(s: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return undefined;
  try {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}
