/**
 * Who is posting: the ingest side of the sensor registry. A request proves its sensor with a
 * bearer token (`Authorization: Bearer opt_…`) or an HMAC signature (`Outpost-Signature`, for
 * devices without TLS). Then the sensor must be allowed the topic (403), be within its rate (429),
 * and be allowed the priority and `Not-Before` headers it uses (403). Every refusal happens before
 * anything is stored.
 *
 * The signature: `Outpost-Signature: keyId=<id>, ts=<unix seconds>, sig=<base64url>` where `sig`
 * is HMAC-SHA256 with the sensor's key over
 * `METHOD "\n" PATH?QUERY "\n" ts "\n" base64url(SHA-256(body))`. A signature more than
 * `windowS` (300 s) from the host's clock is refused, and so is one seen before within the window.
 * @module
 */
import { TokenBucket } from "../dispatch/token_bucket.ts";
import { ProblemError } from "../http/problem.ts";
import type { Logger } from "../util/log.ts";
import { b64url, checkToken, fromB64url, mayPost, sameBytes, SensorRegistry, type Sensor } from "./registry.ts";

/** `--ingest-auth`: auto (required once a registry exists), required, or off. */
export type IngestAuthMode = "auto" | "required" | "off";

const _SIG = /^\s*keyId=([A-Za-z0-9_-]{8})\s*,\s*ts=(\d{1,12})\s*,\s*sig=([A-Za-z0-9_-]{43})\s*$/;

/** A sensor whose signature is still to be checked against the body. */
export interface PendingSignature {
  sensor: Sensor;
  key: string;
  ts: string;
  sig: string;
}

/** The identity of a request, once its credential was checked. */
export interface Caller {
  sensor: Sensor;
  /** Set for an HMAC-signed request: the body must still be checked against it. */
  signature?: PendingSignature;
}

function _unauthorized(code: string, message: string): ProblemError {
  return new ProblemError(401, code, `${message}; nothing was stored`, {}, { "www-authenticate": 'Bearer realm="outpost-ingest"' });
}

/** The ingest guard of a host. */
export class IngestGuard {
  readonly registry: SensorRegistry;
  readonly mode: IngestAuthMode;
  readonly windowS: number;
  #log: Logger;
  #required: boolean;
  #buckets = new Map<string, { key: string; bucket: TokenBucket }>();
  /** Signatures seen within the window, by signature, with the time they stop mattering. */
  #seen = new Map<string, number>();
  #now: () => number;

  constructor(registry: SensorRegistry, mode: IngestAuthMode, log: Logger, o: { windowS?: number; now?: () => number } = {}) {
    this.registry = registry;
    this.mode = mode;
    this.#log = log;
    this.windowS = o.windowS ?? 300;
    this.#now = o.now ?? (() => Date.now());
    this.#required = mode === "required" || (mode === "auto" && registry.present);
  }

  /**
   * Whether ingest needs a credential now. In auto mode it becomes required as soon as a registry
   * appears and stays so until a restart: deleting the file never opens ingest by itself.
   */
  get required(): boolean {
    if (!this.#required && this.mode === "auto" && this.registry.present) {
      this.#required = true;
      this.#log.info(`sensor registry ${this.registry.file} appeared: ingest now needs a sensor credential`);
    }
    return this.#required;
  }

  /**
   * Authenticate a request from its headers (before its body is read).
   * @returns the caller, or undefined when ingest is open
   * @throws ProblemError 401 without a valid credential, 403 for a topic the sensor may not post to, 429 past its rate
   */
  async identify(req: Request, topic: string, clientCert?: string): Promise<Caller | undefined> {
    await this.registry.refresh();
    if (!this.required) return undefined;
    const auth = req.headers.get("authorization");
    const signed = req.headers.get("outpost-signature");
    let caller: Caller;
    const byCert = clientCert === undefined ? undefined : this.registry.sensors.find((s) => s.id === clientCert && s.clientCertificate === true);
    if (byCert && auth === null && signed === null) {
      // A client certificate that chains to --tls-client-ca and names a sensor that accepts one.
      caller = { sensor: byCert };
    } else if (auth !== null) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      const sensor = m ? await checkToken(this.registry, m[1]!) : undefined;
      if (!sensor) throw _unauthorized("invalid_credential", "The sensor token is not valid (revoked, rotated, or mistyped)");
      caller = { sensor };
    } else if (signed !== null) {
      const m = _SIG.exec(signed);
      if (!m) throw _unauthorized("invalid_signature", "Outpost-Signature must be keyId=<id>, ts=<unix seconds>, sig=<base64url HMAC-SHA256>");
      const hit = this.registry.get(m[1]!);
      if (!hit || hit.credential.kind !== "hmac") throw _unauthorized("invalid_signature", "The signature's keyId is not a key of any sensor");
      const skew = Math.abs(this.#now() / 1000 - Number(m[2]));
      if (skew > this.windowS) {
        throw _unauthorized("signature_expired", `The signature's timestamp is ${Math.round(skew)} s from the host's clock; at most ${this.windowS} s is accepted`);
      }
      caller = { sensor: hit.sensor, signature: { sensor: hit.sensor, key: hit.credential.key, ts: m[2]!, sig: m[3]! } };
    } else {
      throw _unauthorized("credential_required", "Ingest needs a sensor credential: Authorization: Bearer <token>, or an Outpost-Signature");
    }
    if (!mayPost(caller.sensor, topic)) {
      throw new ProblemError(403, "topic_forbidden", `Sensor ${caller.sensor.id} may not post to topic ${JSON.stringify(topic)}; nothing was stored`);
    }
    if (this.#bucket(caller.sensor)?.waitMs(1)) throw this.#tooFast(caller.sensor);
    return caller;
  }

  /**
   * Check an HMAC-signed request against its body, and remember the signature (no replays).
   * @throws ProblemError 401 for a wrong or replayed signature
   */
  async verify(req: Request, body: Uint8Array, p: PendingSignature): Promise<void> {
    const url = new URL(req.url);
    const digest = b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(body))));
    const text = `${req.method}\n${url.pathname}${url.search}\n${p.ts}\n${digest}`;
    const key = await crypto.subtle.importKey("raw", new Uint8Array(fromB64url(p.key)), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const want = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(text)));
    if (!sameBytes(want, fromB64url(p.sig))) throw _unauthorized("invalid_signature", "The signature does not match the request (method, path, timestamp and body)");
    const now = this.#now();
    if (this.#seen.size > 10_000) for (const [s, until] of this.#seen) if (until < now) this.#seen.delete(s);
    if (this.#seen.has(p.sig)) throw _unauthorized("signature_replayed", "This signature was used before: sign each request anew");
    this.#seen.set(p.sig, now + this.windowS * 2_000);
  }

  /**
   * Spend the sensor's rate for `count` readings, and check the headers it may use.
   * @throws ProblemError 429 past its rate, 403 for a header it is not allowed
   */
  admit(caller: Caller, count: number, o: { priority: boolean; notBefore: boolean }): void {
    const s = caller.sensor;
    if (o.priority && !s.allowPriority) {
      throw new ProblemError(403, "priority_forbidden", `Sensor ${s.id} may not use Outpost-Priority (allowPriority in the sensor registry); nothing was stored`);
    }
    if (o.notBefore && !s.allowNotBefore) {
      throw new ProblemError(403, "not_before_forbidden", `Sensor ${s.id} may not use Not-Before (allowNotBefore in the sensor registry); nothing was stored`);
    }
    const b = this.#bucket(s);
    if (!b) return;
    if (b.available() < Math.min(count, b.burst)) throw this.#tooFast(s);
    b.take(count);
  }

  #bucket(s: Sensor): TokenBucket | undefined {
    if (!s.rateLimit) return undefined;
    const burst = s.rateLimit.burst ?? Math.max(1, Math.ceil(s.rateLimit.perSecond));
    const key = `${s.rateLimit.perSecond}/${burst}`;
    let e = this.#buckets.get(s.id);
    if (!e || e.key !== key) {
      e = { key, bucket: new TokenBucket(s.rateLimit.perSecond, burst) };
      this.#buckets.set(s.id, e);
    }
    return e.bucket;
  }

  #tooFast(s: Sensor): ProblemError {
    const wait = Math.max(1, Math.ceil((this.#bucket(s)?.waitMs(1) ?? 1000) / 1000));
    return new ProblemError(429, "sensor_rate_limited", `Sensor ${s.id} posts faster than its ${s.rateLimit!.perSecond} readings/s; nothing was stored`, {}, { "retry-after": String(wait) });
  }
}
