/**
 * The only file that spells a subject. Pure, so guest code (the wasm tier's bootstrap) imports it.
 *
 * Subjects inside INGEST. Readings live under `ingest.<topic>`; the tokens below start with `~`,
 * which a topic never contains, so they cannot collide with one:
 * - `ingest.~hi.<topic>`: high-priority readings (a second consumer per handler, served first);
 * - `ingest.~delay.<topic>`: readings not to be handled before their time (the scheduler's).
 */
/** Subject prefixes of the streams: the three, and the recordings (`record.<topic>`, one stream per topic). */
export const SUBJECTS = { ingest: "ingest", outbox: "out", dlq: "dlq", record: "record" } as const;

/** Where a device reports to its hub (`outpost.devices.<device domain>`, kept by the hub's `OUTPOST_DEVICES`). */
export const DEVICE_REPORTS = "outpost.devices";

/** Where a device forwards its results under `--uplink-rate` (`uplink.<device>.<lane>.<subject>`, the hub's streams). */
export const UPLINK = "uplink";

export const PRIORITY_TOKEN = "~hi";
export const DELAY_TOKEN = "~delay";

/** Header carrying the epoch milliseconds before which a reading must not be handled. */
export const NOT_BEFORE_HEADER = "Outpost-Not-Before";
/** Header marking a high-priority reading (value `high`). */
export const PRIORITY_HEADER = "Outpost-Priority";
/** Header of a stored reading: the id of the authenticated sensor that posted it. */
export const SENSOR_HEADER = "Outpost-Sensor";

/** Subject of a reading of `topic`, by priority. */
export function readingSubject(topic: string, high = false): string {
  return high ? `${SUBJECTS.ingest}.${PRIORITY_TOKEN}.${topic}` : `${SUBJECTS.ingest}.${topic}`;
}

/** Subject a delayed reading waits under. */
export function delayedSubject(topic: string): string {
  return `${SUBJECTS.ingest}.${DELAY_TOKEN}.${topic}`;
}

/**
 * The topic of a subject under INGEST, whatever its lane.
 * @example topicOf("ingest.~hi.temperature") === "temperature"
 */
export function topicOf(subject: string): string {
  const rest = patternOf(subject);
  return rest.startsWith(`${PRIORITY_TOKEN}.`) || rest.startsWith(`${DELAY_TOKEN}.`) ? rest.slice(rest.indexOf(".") + 1) : rest;
}

/** The high-priority twin of a handler's filter subject: `ingest.a.>` → `ingest.~hi.a.>`. */
export function priorityFilter(filter: string): string {
  return `${SUBJECTS.ingest}.${PRIORITY_TOKEN}.${patternOf(filter)}`;
}

/** Every subject of a stream whose prefix is `prefix`: `ingest` → `ingest.>`. */
export function streamFilter(prefix: (typeof SUBJECTS)[keyof typeof SUBJECTS]): string {
  return `${prefix}.>`;
}

/** What the scheduler of delayed readings consumes. */
export const DELAYED_FILTER = `${SUBJECTS.ingest}.${DELAY_TOKEN}.>`;

/** A topic or a pattern below `ingest.` (a definition's `subjects`) as a subject (filter). */
export function ingestSubject(pattern: string): string {
  return `${SUBJECTS.ingest}.${pattern}`;
}

/** The part of an INGEST subject (or filter) below `ingest.`: `ingest.a.>` → `a.>`. */
export function patternOf(subject: string): string {
  const prefix = `${SUBJECTS.ingest}.`;
  return subject.startsWith(prefix) ? subject.slice(prefix.length) : subject;
}

/** Where a recorded topic's readings are kept as well: `record.<topic>`. */
export function recordSubject(topic: string): string {
  return `${SUBJECTS.record}.${topic}`;
}

/** Where `ctx.publish(subject)` stores: `out.<subject>`. */
export function outboxSubject(subject: string): string {
  return `${SUBJECTS.outbox}.${subject}`;
}

/** A handler's dead letters, or every dead letter when `handler` is absent. */
export function dlqSubject(handler?: string): string {
  return handler === undefined ? streamFilter(SUBJECTS.dlq) : `${SUBJECTS.dlq}.${handler}`;
}

/**
 * Subjects that stay on a device when its nats-server is a leafnode of a hub: its streams'
 * subjects, KV buckets, and the acks of INGEST and DLQ.
 */
export function localSubjects(ackStreams: readonly string[]): string[] {
  return [...Object.values(SUBJECTS).map(streamFilter), "$KV.*.>", ...ackStreams.map((s) => `$JS.ACK.${s}.>`)];
}

/**
 * NATS subject matching with `*` (one token) and `>` (the rest).
 * @param filter a subject filter
 * @param subject a literal subject
 */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length || (f[i] !== "*" && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

/** Whether `s` may be given to `ctx.publish`: a literal subject of safe tokens (no wildcards). */
export function isPublishSubject(s: string): boolean {
  return s.length > 0 && s.length <= 256 && /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(s);
}

/**
 * What the host's own user of the embedded nats-server may publish and subscribe to, and nothing
 * else: its three streams, the JetStream, KV and object-store APIs (its own domain and a hub's),
 * and reply inboxes. No `$SYS`, no subject outside Outpost's.
 */
export function hostPermissions(): { publish: string[]; subscribe: string[] } {
  const streams = Object.values(SUBJECTS).map(streamFilter);
  return {
    // mqtt.>: a dead-lettered MQTT reading is replayed through the MQTT bridge again.
    publish: [...streams, "mqtt.>", `${DEVICE_REPORTS}.*`, `${UPLINK}.>`, "$JS.>", "$KV.>", "$O.>", "_INBOX.>"],
    subscribe: ["_INBOX.>", "$KV.>", "$O.>"],
  };
}
