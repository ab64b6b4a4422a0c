/**
 * Outpost's host API: start a host from code, and the pieces tests and tools reuse.
 * @module
 */
export { startOutpost, type Outpost, type OutpostOptions } from "./host/start.ts";
export { createLogger, type Level, type Logger } from "./util/log.ts";
export { decodeCbor, encodeCbor, scanCbor, CborError, DEFAULT_CBOR_LIMITS, type CborLimits } from "./codec/cbor.ts";
export { isSimple, isTag, Simple, Tag } from "./codec/cbor_data.ts";
export { STREAMS, SUBJECTS } from "./broker/streams.ts";
export type { DeadLetter } from "./dlq/dead_letter.ts";
export type { HandlerView } from "./host/registry.ts";
export { VERSION } from "./version.ts";
