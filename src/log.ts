/** Minimal leveled logger: one line per event, prefixed with the thread, to stderr. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(msg: string, ...rest: unknown[]): void;
  warn(msg: string, ...rest: unknown[]): void;
  info(msg: string, ...rest: unknown[]): void;
  debug(msg: string, ...rest: unknown[]): void;
}

export function createLogger(level: LogLevel, scope: string): Logger {
  const at = RANK[level];
  const line = (l: LogLevel) => (msg: string, ...rest: unknown[]) => {
    if (RANK[l] <= at) console.error(`${new Date().toISOString()} ${l.toUpperCase().padEnd(5)} [${scope}] ${msg}`, ...rest);
  };
  return { error: line('error'), warn: line('warn'), info: line('info'), debug: line('debug') };
}
