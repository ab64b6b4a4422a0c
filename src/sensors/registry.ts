/**
 * The sensor registry: who may post what. A JSON file in the data directory (`sensors.json`,
 * mode 0600), written by `outpost sensors …` and re-read by the host when it changes, so adding,
 * revoking or rotating a sensor needs no restart. Each sensor has an id, the topics it may post
 * to (patterns: `*` one token, `>` the rest), an optional rate limit, whether it may use the
 * priority and `Not-Before` headers, and credentials: bearer tokens, stored only as a salted
 * SHA-256 (a token is 32 random bytes, so a fast hash is enough: there is nothing to guess), and
 * HMAC keys for devices that sign requests instead (the key must be kept to check signatures).
 * @module
 */
import { chmod, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import bcrypt from "bcryptjs";
import { subjectMatches } from "../broker/subjects.ts";
import { ConfigError } from "../errors.ts";
import { isTopic } from "../sdk/definition.ts";

/** The registry's file in a data directory. */
export function registryFile(dataDir: string): string {
  return join(dataDir, "sensors.json");
}

const _ID = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, "a sensor id is 1 to 64 letters, digits, _ . : -, starting with a letter or digit"));
const _PATTERN = v.pipe(v.string(), v.check((t) => _isPattern(t), "a topic pattern is dot-separated tokens, * for one token, > for the rest"));
const _CREDENTIAL = v.variant("kind", [
  // bcrypt: the same token as nats-server checks an MQTT password (tokens made before MQTT have none).
  v.object({ id: v.string(), kind: v.literal("token"), salt: v.string(), hash: v.string(), bcrypt: v.optional(v.string()), created: v.string() }),
  v.object({ id: v.string(), kind: v.literal("hmac"), key: v.string(), created: v.string() }),
]);
const _SENSOR = v.object({
  id: _ID,
  topics: v.pipe(v.array(_PATTERN), v.minLength(1, "a sensor may post to at least one topic")),
  rateLimit: v.optional(v.object({ perSecond: v.pipe(v.number(), v.minValue(0.001)), burst: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))) })),
  allowPriority: v.optional(v.boolean()),
  allowNotBefore: v.optional(v.boolean()),
  /** The sensor may authenticate with a TLS client certificate whose subject CN is its id (`--tls-client-ca`). */
  clientCertificate: v.optional(v.boolean()),
  credentials: v.array(_CREDENTIAL),
  created: v.string(),
});
const _FILE = v.object({ version: v.literal(1), sensors: v.array(_SENSOR) });

/** One credential of a sensor, as stored. */
export type Credential = v.InferOutput<typeof _CREDENTIAL>;
/** One sensor, as stored. */
export type Sensor = v.InferOutput<typeof _SENSOR>;
/** The registry file. */
export type RegistryFile = v.InferOutput<typeof _FILE>;

function _isPattern(t: string): boolean {
  if (t === ">" || t === "*") return true;
  const parts = t.split(".");
  return parts.every((p, i) => p === "*" || (p === ">" && i === parts.length - 1) || isTopic(p));
}

/** Whether `sensor` may post to `topic`. */
export function mayPost(sensor: Sensor, topic: string): boolean {
  return sensor.topics.some((p) => subjectMatches(p, topic));
}

/**
 * Read and check a registry file.
 * @returns the registry, or undefined when the file does not exist
 * @throws ConfigError naming the file and every problem
 */
export async function readRegistry(file: string): Promise<RegistryFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError(`Cannot read the sensor registry ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`The sensor registry ${file} is not JSON: ${(e as Error).message}`);
  }
  const r = v.safeParse(_FILE, raw);
  if (!r.success) {
    throw new ConfigError(`The sensor registry ${file} is invalid: ${r.issues.map((i) => `${v.getDotPath(i) ?? "(file)"}: ${i.message}`).join("; ")}`);
  }
  const ids = new Set<string>();
  for (const s of r.output.sensors) {
    if (ids.has(s.id)) throw new ConfigError(`The sensor registry ${file} names sensor ${s.id} twice`);
    ids.add(s.id);
  }
  return r.output;
}

/** Write a registry file atomically (a temporary file renamed over it), readable by its owner only. */
export async function writeRegistry(file: string, reg: RegistryFile): Promise<void> {
  const r = v.safeParse(_FILE, reg);
  if (!r.success) throw new ConfigError(`Not written: ${r.issues.map((i) => `${v.getDotPath(i) ?? "(file)"}: ${i.message}`).join("; ")}`);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(reg, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

/** Bytes → base64url without padding. */
export function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** base64url → bytes. */
export function fromB64url(text: string): Uint8Array<ArrayBuffer> {
  const b = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

async function _sha256(...parts: Uint8Array[]): Promise<Uint8Array> {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
}

/** Bearer tokens look like `opt_<credential id>_<secret>`: the id finds the credential, the secret proves it. */
const _TOKEN = /^opt_([A-Za-z0-9_-]{8})_([A-Za-z0-9_-]{43})$/;

/**
 * A new bearer token for a sensor.
 * @returns the token (shown once) and the credential to store (its salted hash only)
 */
export async function newToken(): Promise<{ token: string; credential: Credential }> {
  const id = b64url(crypto.getRandomValues(new Uint8Array(6)));
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const hash = await _sha256(salt, new TextEncoder().encode(b64url(secret)));
  const token = `opt_${id}_${b64url(secret)}`;
  return {
    token,
    // nats-server takes an MQTT password only in clear or as bcrypt; cost 10 is ~0.1 s per connect.
    credential: { id, kind: "token", salt: b64url(salt), hash: b64url(hash), bcrypt: await bcrypt.hash(token, 10), created: new Date().toISOString() },
  };
}

/**
 * A new HMAC key for a sensor that signs its requests.
 * @returns the key id and key (shown once; the device keeps both) and the credential to store
 */
export function newHmacKey(): { keyId: string; key: string; credential: Credential } {
  const id = b64url(crypto.getRandomValues(new Uint8Array(6)));
  const key = b64url(crypto.getRandomValues(new Uint8Array(32)));
  return { keyId: id, key, credential: { id, kind: "hmac", key, created: new Date().toISOString() } };
}

/** Constant-time comparison of two byte strings. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** Credentials by id, for lookups at ingest. */
export interface CredentialIndex {
  get(id: string): { sensor: Sensor; credential: Credential } | undefined;
}

/**
 * Check a bearer token against the registry.
 * @returns the sensor it belongs to, or undefined
 */
export async function checkToken(index: CredentialIndex, token: string): Promise<Sensor | undefined> {
  const m = _TOKEN.exec(token);
  if (!m) return undefined;
  const hit = index.get(m[1]!);
  if (!hit || hit.credential.kind !== "token") return undefined;
  const hash = await _sha256(fromB64url(hit.credential.salt), new TextEncoder().encode(m[2]!));
  return sameBytes(hash, fromB64url(hit.credential.hash)) ? hit.sensor : undefined;
}

/**
 * The registry a host serves: the file re-read when it changes (checked at most once a second,
 * on use), with an index of credentials. A file that becomes invalid keeps the last good registry
 * in force and is reported, so a typo never opens ingest.
 */
export class SensorRegistry implements CredentialIndex {
  readonly file: string;
  #reg: RegistryFile | undefined;
  #index = new Map<string, { sensor: Sensor; credential: Credential }>();
  #mtime = -1;
  #checkedAt = 0;
  #error: string | undefined;
  #onChange: (msg: string, level: "info" | "error") => void;

  constructor(file: string, onChange: (msg: string, level: "info" | "error") => void = () => {}) {
    this.file = file;
    this.#onChange = onChange;
  }

  /** Load the file (at start: an invalid file is an error then, not later). */
  async load(): Promise<void> {
    const reg = await readRegistry(this.file);
    this.#use(reg);
    this.#mtime = await _mtime(this.file);
    this.#checkedAt = performance.now();
  }

  /** Whether a registry exists (then ingest is authenticated, unless the operator said otherwise). */
  get present(): boolean {
    return this.#reg !== undefined;
  }

  /** Sensors now in force. */
  get sensors(): readonly Sensor[] {
    return this.#reg?.sensors ?? [];
  }

  /** What is wrong with the file on disk, when the registry in force is an older one. */
  get error(): string | undefined {
    return this.#error;
  }

  get(id: string): { sensor: Sensor; credential: Credential } | undefined {
    return this.#index.get(id);
  }

  /** Re-read the file if it changed since the last look (at most once a second). */
  async refresh(): Promise<void> {
    const now = performance.now();
    if (now - this.#checkedAt < 1_000) return;
    this.#checkedAt = now;
    const mtime = await _mtime(this.file);
    if (mtime === this.#mtime) return;
    this.#mtime = mtime;
    try {
      this.#use(await readRegistry(this.file));
      this.#error = undefined;
      this.#onChange(`sensor registry ${this.file} reloaded: ${this.sensors.length} sensor(s)`, "info");
      this.onReload?.();
    } catch (e) {
      this.#error = (e as Error).message;
      this.#onChange(`${this.#error}; the previous registry stays in force`, "error");
    }
  }

  /** Called after every reload that took effect (the MQTT users follow the registry). */
  onReload: (() => void) | undefined;

  #use(reg: RegistryFile | undefined): void {
    this.#reg = reg;
    this.#index = new Map();
    for (const s of reg?.sensors ?? []) for (const c of s.credentials) this.#index.set(c.id, { sensor: s, credential: c });
  }
}

async function _mtime(file: string): Promise<number> {
  try {
    const s = await stat(file);
    return s.mtimeMs + s.size / 1e9 + s.ino;
  } catch {
    return 0;
  }
}

/**
 * The sensors that can log in over MQTT: each with the bcrypt hash of its newest token.
 * @returns them, and the ids of sensors that cannot (no token made since MQTT support: rotate)
 */
export function mqttLogins(sensors: readonly Sensor[]): { logins: { id: string; topics: string[]; bcrypt: string }[]; without: string[] } {
  const logins: { id: string; topics: string[]; bcrypt: string }[] = [];
  const without: string[] = [];
  for (const s of sensors) {
    const tokens = s.credentials.filter((c): c is Credential & { kind: "token"; bcrypt: string } => c.kind === "token" && typeof c.bcrypt === "string");
    const newest = tokens.sort((a, b) => b.created.localeCompare(a.created))[0];
    if (newest) logins.push({ id: s.id, topics: [...s.topics], bcrypt: newest.bcrypt });
    else without.push(s.id);
  }
  return { logins, without };
}
