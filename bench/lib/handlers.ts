/** Source text of the handlers the benchmark drops into a workers directory. */
import { READING_SCHEMA_SRC } from "./payload.ts";

/** Concurrency of the benchmark's sink handler, matched by BullMQ's worker and the ceilings. */
export const SINK_CONCURRENCY = 64;

/**
 * A handler that takes one message and holds it (until cancelled), so that its topic is routable
 * and its consumer keeps interest while nothing is dispatched: ingest is measured alone.
 */
export const PARK_HANDLER = `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: "park",
  schema: ${READING_SCHEMA_SRC},
  concurrency: 1,
  timeoutMs: 3_600_000,
  async handle(_reading, ctx) {
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
  },
});
`;

/** {@link PARK_HANDLER} for SenML packs: each resolved record a reading, checked by `SenmlRecord`. */
export const PARK_SENML_HANDLER = PARK_HANDLER
  .replace('topic: "park"', 'topic: "parksenml",\n  senml: "records"')
  .replace(`schema: ${READING_SCHEMA_SRC}`, "schema: SenmlRecord")
  .replace("import { defineHandler, v }", "import { defineHandler, SenmlRecord, v }");

/** The trivial handler of the end-to-end sections. */
export function sinkHandler(topic: string, concurrency = SINK_CONCURRENCY): string {
  return `import { defineHandler, v } from "outpost/handler";
export default defineHandler({
  topic: ${JSON.stringify(topic)},
  schema: ${READING_SCHEMA_SRC},
  concurrency: ${concurrency},
  async handle() {},
});
`;
}
