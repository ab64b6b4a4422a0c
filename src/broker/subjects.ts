/**
 * Subjects inside INGEST. Readings live under `ingest.<topic>`; the tokens below start with `~`,
 * which a topic never contains, so they cannot collide with one:
 * - `ingest.~hi.<topic>`: high-priority readings (a second consumer per handler, served first);
 * - `ingest.~delay.<topic>`: readings not to be handled before their time (the scheduler's).
 */
export const PRIORITY_TOKEN = "~hi";
export const DELAY_TOKEN = "~delay";

/** Header carrying the epoch milliseconds before which a reading must not be handled. */
export const NOT_BEFORE_HEADER = "Outpost-Not-Before";
/** Header marking a high-priority reading (value `high`). */
export const PRIORITY_HEADER = "Outpost-Priority";

/** Subject of a reading of `topic`, by priority. */
export function readingSubject(topic: string, high = false): string {
  return high ? `ingest.${PRIORITY_TOKEN}.${topic}` : `ingest.${topic}`;
}

/** Subject a delayed reading waits under. */
export function delayedSubject(topic: string): string {
  return `ingest.${DELAY_TOKEN}.${topic}`;
}

/**
 * The topic of a subject under INGEST, whatever its lane.
 * @example topicOf("ingest.~hi.temperature") === "temperature"
 */
export function topicOf(subject: string): string {
  const rest = subject.replace(/^ingest\./, "");
  return rest.startsWith(`${PRIORITY_TOKEN}.`) || rest.startsWith(`${DELAY_TOKEN}.`) ? rest.slice(rest.indexOf(".") + 1) : rest;
}

/** The high-priority twin of a handler's filter subject: `ingest.a.>` → `ingest.~hi.a.>`. */
export function priorityFilter(filter: string): string {
  return filter.replace(/^ingest\./, `ingest.${PRIORITY_TOKEN}.`);
}
