/** Log levels in increasing severity. */
export const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
/** One of {@link LEVELS}' keys. */
export type Level = keyof typeof LEVELS;

/** Fields a JSON log line carries where they apply (text lines leave them out). */
export interface LogFields {
  handler?: string | undefined;
  topic?: string | undefined;
  seq?: number | undefined;
  msgId?: string | undefined;
  attempt?: number | undefined;
  durationMs?: number | undefined;
  traceId?: string | undefined;
  [key: string]: string | number | boolean | undefined;
}

/** A small structured logger writing one line per entry to stderr. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines carry `[scope]` (JSON: `"scope"`), and `fields` on every line. */
  child(scope: string, fields?: LogFields): Logger;
}

/** `--log-format`: `text` lines for a person, or one JSON object per line for a collector. */
export type LogFormat = "text" | "json";

/**
 * Make a logger.
 * @param level the lowest level written
 * @param write where lines go (stderr by default)
 * @param scope prefix shown as `[scope]`
 * @param format text or JSON lines (`ts`, `level`, `scope`, `msg`, then the fields that apply)
 * @param base fields every line of this logger carries
 */
export function createLogger(
  level: Level = "info",
  write: (line: string) => void = (l) => console.error(l),
  scope = "outpost",
  format: LogFormat = "text",
  base: LogFields = {},
): Logger {
  const min = LEVELS[level];
  const emit = (lvl: Level, msg: string, fields?: LogFields) => {
    if (LEVELS[lvl] < min) return;
    if (format === "json") {
      const entry: Record<string, unknown> = { ts: new Date().toISOString(), level: lvl, scope, msg };
      for (const [k, v] of Object.entries(base)) if (v !== undefined) entry[k] = v;
      for (const [k, v] of Object.entries(fields ?? {})) if (v !== undefined) entry[k] = v;
      // JSON.stringify escapes line breaks and control characters: one entry is one line.
      write(JSON.stringify(entry));
      return;
    }
    write(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} [${scope}] ${_oneEntry(msg)}`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (s, f) => createLogger(level, write, s, format, { ...base, ...f }),
  };
}

/**
 * An entry can never pass for another one: line breaks inside it (stack traces, a handler's
 * multi-line text, a CRLF smuggled in a topic) continue indented, other control characters are escaped.
 */
function _oneEntry(msg: string): string {
  // deno-lint-ignore no-control-regex
  if (!/[\u0000-\u001f\u007f]/.test(msg)) return msg;
  return msg
    .replace(/\r\n|\r|\n/g, "\n    ")
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
