/**
 * Leveled, structured logging: one line per event on stderr, from every thread.
 *
 * - `text` (default): `2026-01-01T00:00:00.000Z INFO  [shard 0] message key=value err="Error: … | at …"`
 *   (without the `event` field)
 * - `json`: `{"time":"…","level":"info","thread":"shard 0","shard":0,"msg":"…","key":"value"}`
 *
 * A call is `log.info(msg, ...rest)`: an Error in `rest` becomes the `err` field (stack folded onto the
 * one line), a plain object adds its keys as fields, anything else is appended to the message. Events
 * that could flood (one per connection or request) carry an `event` field: at most `rate` lines per
 * second per event kind and thread are written, then one "suppressed K" line for the rest.
 */
import { inspect } from 'node:util';
import { RtError, toErrorBody } from './errors.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'text' | 'json';
export type LogFields = Record<string, unknown>;

/**
 * `notice` lines are written whatever the level: the start line (port), a generated API key and the
 * shutdown line, which scripts and operators need even at --log-level=error.
 */
type LineLevel = LogLevel | 'notice';
const RANK: Record<LineLevel, number> = { notice: -1, error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(msg: string, ...rest: unknown[]): void;
  warn(msg: string, ...rest: unknown[]): void;
  info(msg: string, ...rest: unknown[]): void;
  debug(msg: string, ...rest: unknown[]): void;
  /** Written whatever the level (see above). */
  notice(msg: string, ...rest: unknown[]): void;
  /** Whether `level` is written: skip building costly fields when it is not. */
  enabled(level: LogLevel): boolean;
}

export interface LogOptions {
  /** Line format. Default: `text`. */
  format?: LogFormat;
  /** Lines per second per event kind (the `event` field) and thread; 0 = unlimited. Default: 50. */
  rate?: number;
  /** Where lines go; default: stderr. */
  write?: (line: string) => void;
}

/** This thread's defaults, set once at start (configureLogs) so every createLogger call follows them. */
const defaults: Required<LogOptions> = { format: 'text', rate: 50, write: (line) => void process.stderr.write(line) };

export function configureLogs(opts: LogOptions): void {
  if (opts.format !== undefined) defaults.format = opts.format;
  if (opts.rate !== undefined) defaults.rate = opts.rate;
  if (opts.write !== undefined) defaults.write = opts.write;
}

/** One-line rendering of an error: name, message, code, stack with its line breaks folded. */
export function errorFields(err: Error): LogFields {
  const out: LogFields = { name: err.name, message: err.message };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (err.stack) out.stack = err.stack;
  return out;
}

const fold = (s: string): string => s.replace(/\r?\n\s*/g, ' | ');

function isPlainObject(v: unknown): v is LogFields {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function isError(v: unknown): v is Error {
  return v instanceof Error || (typeof v === 'object' && v !== null && typeof (v as Error).message === 'string' && typeof (v as Error).stack === 'string');
}

function textValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return JSON.stringify(inspect(v, { breakLength: Infinity }));
  }
}

function jsonReplacer(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? String(v) : v;
}

/** Per-thread rate limiting of event kinds. */
const windows = new Map<string, { start: number; count: number; suppressed: number; level: LineLevel; scope: string }>();

export function createLogger(level: LogLevel, scope: string, opts: LogOptions = {}): Logger {
  const at = RANK[level];
  const shard = /^shard (\d+)$/.exec(scope);
  const format = () => opts.format ?? defaults.format;
  const rate = () => opts.rate ?? defaults.rate;
  const write = (s: string) => (opts.write ?? defaults.write)(s);

  const render = (l: LineLevel, msg: string, fields: LogFields): string => {
    const time = new Date().toISOString();
    if (format() === 'json') {
      const head: LogFields = { time, level: l, thread: scope };
      if (shard) head.shard = Number(shard[1]);
      head.msg = msg;
      try {
        return JSON.stringify({ ...head, ...fields, ...head }, jsonReplacer) + '\n';
      } catch {
        // A field that cannot be serialized (a cycle) must not lose the line.
        return JSON.stringify({ ...head, fields: inspect(fields, { breakLength: Infinity, depth: 3 }) }) + '\n';
      }
    }
    let line = `${time} ${l.toUpperCase().padEnd(5)} [${scope}] ${fold(msg)}`;
    for (const [k, v] of Object.entries(fields)) {
      // `event` names the kind of line for filters on JSON logs; in text the message says it.
      if (v === undefined || k === 'event' || k === 'err') continue;
      line += ` ${k}=${fold(textValue(v))}`;
    }
    // The error last: its folded stack is the longest part of the line.
    const err = fields.err;
    if (isPlainObject(err)) line += ` err=${textValue(fold(String(err.stack ?? `${err.name}: ${err.message}`)))}`;
    else if (err !== undefined) line += ` err=${fold(textValue(err))}`;
    return line + '\n';
  };

  const emit = (l: LineLevel, msg: string, rest: unknown[]) => {
    if (RANK[l] > at) return;
    const fields: LogFields = {};
    let text = msg;
    for (const r of rest) {
      // An optional error that is absent (log(msg, err) with err undefined) adds nothing to the line.
      if (r === undefined) continue;
      if (isError(r)) fields.err = errorFields(r);
      else if (isPlainObject(r)) Object.assign(fields, r);
      else text += ' ' + (typeof r === 'string' ? r : inspect(r, { breakLength: Infinity, depth: 3 }));
    }
    // An Error passed as a field ({ err }) is rendered like one passed on its own.
    if (isError(fields.err)) fields.err = errorFields(fields.err);
    const kind = typeof fields.event === 'string' ? fields.event : undefined;
    const limit = rate();
    if (kind !== undefined && limit > 0) {
      const key = `${scope}\0${kind}`;
      const now = Date.now();
      let w = windows.get(key);
      if (!w || now - w.start >= 1000) windows.set(key, (w = { start: now, count: 0, suppressed: 0, level: l, scope }));
      if (++w.count > limit) {
        if (w.suppressed++ === 0) {
          const win = w;
          // The summary closes the window; unref: it must not keep a stopping process alive.
          setTimeout(() => {
            write(render(win.level, `suppressed ${win.suppressed} more "${kind}" line(s) in the last second (--log-rate=${limit})`, { event: 'log.suppressed', kind, suppressed: win.suppressed }));
            if (windows.get(key) === win) windows.delete(key);
          }, Math.max(0, win.start + 1000 - now)).unref?.();
        }
        return;
      }
    }
    write(render(l, text, fields));
  };

  return {
    error: (msg, ...rest) => emit('error', msg, rest),
    warn: (msg, ...rest) => emit('warn', msg, rest),
    info: (msg, ...rest) => emit('info', msg, rest),
    debug: (msg, ...rest) => emit('debug', msg, rest),
    notice: (msg, ...rest) => emit('notice', msg, rest),
    enabled: (l) => RANK[l] <= at,
  };
}

const SILENT: Logger = createLogger('error', 'silent', { write: () => {} });
let threadLog: Logger = SILENT;

/** Makes `log` this thread's logger for code that has no context object at hand (see threadLogger). */
export function setThreadLogger(log: Logger): void {
  threadLog = log;
}

/** This thread's logger (the shard's, or the main thread's); silent until one is set. */
export function threadLogger(): Logger {
  return threadLog;
}

/**
 * Logs an error that toErrorBody answers as `internal`: the client is told only "internal error", so
 * its stack is logged here, on the thread it was thrown on, or nowhere (a coded error is a refusal,
 * not a fault; an RtError('internal') came from another thread, which logged it).
 */
export function logInternal(err: unknown, doing: string): void {
  if (err instanceof RtError || toErrorBody(err).code !== 'internal') return;
  threadLogger().error(`${doing} failed with an unexpected error (answered as internal)`, err, { event: 'internal' });
}

/**
 * A configured URL (a webhook, --jwks-url) as the log shows it: no credentials, and `?…` for a query,
 * which often carries a token.
 */
export function urlForLog(url: string | URL): string {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch {
    return '(an invalid URL)';
  }
  return `${u.origin}${u.pathname}${u.search ? '?…' : ''}`;
}
