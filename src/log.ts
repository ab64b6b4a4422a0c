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
    write(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} [${scope}] ${msg}`);
  };
  return {
    debug: (m) => emit("debug", m),
    info: (m) => emit("info", m),
    warn: (m) => emit("warn", m),
    error: (m) => emit("error", m),
    child: (s) => createLogger(level, write, s),
  };
}
