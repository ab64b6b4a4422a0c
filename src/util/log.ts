/** Log levels in increasing severity. */
export const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
/** One of {@link LEVELS}' keys. */
export type Level = keyof typeof LEVELS;

/** A small structured logger writing one line per entry to stderr. */
export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  /** A logger whose lines carry `[scope]`. */
  child(scope: string): Logger;
}

/**
 * Make a logger.
 * @param level the lowest level written
 * @param write where lines go (stderr by default)
 * @param scope prefix shown as `[scope]`
 */
export function createLogger(
  level: Level = "info",
  write: (line: string) => void = (l) => console.error(l),
  scope = "outpost",
): Logger {
  const min = LEVELS[level];
  const emit = (lvl: Level, msg: string) => {
    if (LEVELS[lvl] < min) return;
    write(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} [${scope}] ${_oneEntry(msg)}`);
  };
  return {
    debug: (m) => emit("debug", m),
    info: (m) => emit("info", m),
    warn: (m) => emit("warn", m),
    error: (m) => emit("error", m),
    child: (s) => createLogger(level, write, s),
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
