/**
 * The rt-actors command: `start` runs the server, `token` mints a test token, `health` probes a running server. Flags map 1:1 to the
 * configuration schema; anything unknown or invalid exits with code 2 and says what is accepted.
 */
import { ConfigError, ignoredOptions, loadConfig, readConfigFile, unknownEnvironment } from '../config/load.js';
import { didYouMean } from '../config/suggest.js';
import { OPTIONS, envOf, flagOf, specByFlag, type ServerConfig } from '../config/schema.js';
// The server and the JWT library load only for the commands that use them: --help, --version, the
// token command's usage errors and config errors answer in a fraction of the time (0.6 s -> 0.2 s here).
import type { startServer } from '../server.js';
import { version } from '../version.js';
import { ListenError } from '../errors.js';
import { createLogger, errorFields, type Logger } from '../log.js';
import { startedByNpm, watchParent } from './parent-watch.js';
import { listenHostPort, servedEndpoints } from './endpoints.js';

class UsageError extends Error {}

/** Exit codes of `rt-actors` (also in --help and docs/deployment.md#exit-codes). */
export const EXIT = {
  /** Success, or a clean shutdown on SIGTERM/SIGINT. */
  OK: 0,
  /** Unexpected error (a bug: please report it with the line printed). */
  UNEXPECTED: 1,
  /** Invalid usage or configuration: a flag, RT_* variable or config-file key, a TLS/JWT key file, the --actors folder, a --host not of this machine, Redis unreachable at start. */
  CONFIG: 2,
  /** The port cannot be bound: in use by another process, or not permitted. */
  LISTEN: 3,
} as const;

const EXIT_HELP = `Exit codes:
  0  success; clean shutdown after SIGTERM/SIGINT (clients were told to reconnect)
  1  unexpected error (a bug: report it with the line printed)
  2  invalid usage or configuration: an option, RT_* variable or config-file key, a TLS or JWT key
     file, the --actors folder, a --host that is not an address of this machine, or Redis
     unreachable at start
  3  the port cannot be bound (in use by another process, or not permitted)
A second SIGINT (Ctrl-C) during the drain stops the process at once (SIGKILL: a shell shows 137).`;

const MAIN_HELP = `rt-actors ${version} — realtime messaging server (channel actors on worker threads)

Usage:
  rt-actors start [options]    serve WebSocket, SSE, long-polling, Socket.IO, HTTP API and health on one port
  rt-actors token [options]    mint a connection token (JWT) for testing
  rt-actors health [options]   ask the server running here for /health (exit 0 healthy, 1 not)
  rt-actors --help | --version

Run 'rt-actors <command> --help' (or 'rt-actors help <command>') for the options of a command.

${EXIT_HELP}

Docs: README.md and docs/ in the package (docs/configuration.md, docs/deployment.md, docs/protocol.md).
`;

function startHelp(): string {
  const rows = OPTIONS.filter((o) => !o.hidden).map((o) => {
    const type = o.type === 'enum' ? o.choices!.join('|') : o.type === 'workers' ? 'auto|int' : o.type;
    const flag = o.type === 'bool' ? `--${flagOf(o.key)}, --no-${flagOf(o.key)}` : `--${flagOf(o.key)}=<${type}>`;
    const def = o.default === '' || (Array.isArray(o.default) && o.default.length === 0) ? '' : ` (default: ${String(o.default)})`;
    // A config file cannot name another one: --config has no config key.
    const sources = o.key === 'config' ? `env ${envOf(o.key)}` : `env ${envOf(o.key)}, config key "${o.key}"`;
    return `  ${flag}\n      ${o.doc}${def}\n      ${sources}`;
  });
  return `Usage: rt-actors start [options]

Serves every transport on one port. Precedence: flags > RT_* environment > --config file > defaults.
Values: --key=value or --key value. Booleans: --flag or --flag=true turns one on; --no-flag or
--flag=false turns it off (true/false, 1/0, yes/no); --no-flag takes no value.

Endpoints (on --port):
  /ws                       WebSocket (native protocol; JSON or msgpack)
  /sse, /poll               Server-Sent Events and HTTP long-polling (see --transports)
  /socket.io/               Socket.IO / Laravel Echo gateway
  /app/<key>, /apps/<id>/   Pusher protocol: pusher-js / Laravel Echo (pusher, reverb) and the Pusher
                            HTTP API, with --pusher-app-id/--pusher-key/--pusher-secret or --pusher-apps
  /api/...                  HTTP API (publish, batch, channels, users), Authorization: Bearer <api key>;
                            its OpenAPI description at /api/openapi.json
  /health, /metrics         health check (200/503) and Prometheus metrics
  /client.js                browser client bundle
  /dashboard                live operator dashboard, with --dashboard

Options:
${rows.join('\n')}
  --help
      show this help

Logs: every line goes to stderr (--log-format=text|json); stdout carries nothing while serving.

${EXIT_HELP}

Examples:
  rt-actors start --port=6001 --api-key=$KEY --jwt-secret=$SECRET
  RT_WORKERS=4 rt-actors start --actors=./actors --log-format=json
  rt-actors start --config=rt-actors.json --no-restart-shards
  rt-actors start --redis=redis://10.0.0.5:6379 --require-auth

Docs: docs/configuration.md (every option), docs/deployment.md (Docker, nginx, systemd, signals, logs).
`;
}

const TOKEN_HELP = `Usage: rt-actors token --sub <user id> [options]

Prints a signed JWT alone on its last line.

Options:
  --sub=<id>            user id (required)
  --channels=<list>     comma-separated channel names or * patterns the token grants
  --info=<json>         user_info claim (JSON)
  --ttl=<duration>      lifetime, e.g. 90s, 15m, 1h, 7d (default: 1h)
  --secret=<secret>     HS256 secret (default: the configured jwtSecret: RT_JWT_SECRET or --config file)
  --config=<file>       config file to read jwtSecret, jwtAudience and jwtIssuer from

The token's aud and iss claims are the first configured --jwt-audience and --jwt-issuer (RT_JWT_AUDIENCE,
RT_JWT_ISSUER or the --config file), which the server requires when they are set.
  --help                show this help
`;

/** Parses `--key=value`, `--key value`, `--flag`, `--no-flag`. */
export function parseFlags(args: string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-h') {
      out.set('help', true);
      continue;
    }
    if (!a.startsWith('--') || a === '--') {
      const prev = args[i - 1];
      const hint = /^-[^-]/.test(a)
        ? a.length > 2 ? ` (options start with two dashes: write -${a})` : ' (options have long names only, e.g. --port; see --help)'
        : prev?.startsWith('--') && !prev.includes('=') && isBoolFlag(prev.slice(2)) ? ` (${prev} is a boolean: write ${prev.replace(/^--(no-)?/, '--')}=${a} instead)` : '';
      throw new UsageError(`unexpected argument "${a}"${hint}`);
    }
    const eq = a.indexOf('=');
    if (eq > 0) {
      out.set(a.slice(2, eq), a.slice(eq + 1));
    } else {
      const name = a.slice(2);
      const next = args[i + 1];
      if (next !== undefined && !next.startsWith('--') && !isBoolFlag(name)) {
        out.set(name, next);
        i++;
      } else out.set(name, true);
    }
  }
  return out;
}

function isBoolFlag(name: string): boolean {
  const spec = specByFlag(name.replace(/^no-/, ''));
  return name === 'help' || name === 'version' || spec?.type === 'bool';
}

/**
 * Flags to raw config values. `--flag` is true and `--no-flag` false; `--flag=<value>` is parsed by the
 * schema (true/false, 1/0, yes/no). `--no-flag=<value>` is refused: a double negative such as
 * `--no-require-auth=1` reads both ways, and guessing wrong would turn a security option around.
 */
function configFlags(flags: Map<string, string | true>): Partial<Record<keyof ServerConfig, unknown>> {
  const out: Partial<Record<keyof ServerConfig, unknown>> = {};
  for (const [name, value] of flags) {
    if (name === 'help') continue;
    const direct = specByFlag(name);
    const negated = !direct && name.startsWith('no-') ? specByFlag(name.slice(3)) : undefined;
    const spec = direct ?? negated;
    if (!spec) {
      const flags = OPTIONS.map((o) => flagOf(o.key));
      // The flag an option's variable suggests, where it is another (--redis-url for --redis).
      const fromEnv = OPTIONS.find((o) => o.env && o.env.slice(3).toLowerCase().replace(/_/g, '-') === name);
      const negations = OPTIONS.filter((o) => o.type === 'bool').map((o) => `no-${flagOf(o.key)}`);
      const hint = fromEnv ? ` (did you mean --${flagOf(fromEnv.key)}?)` : didYouMean(name, [...flags, ...negations], (f) => `--${f}`);
      throw new UsageError(`unknown option --${name}${hint}; accepted options: ${flags.map((f) => `--${f}`).join(', ')}`);
    }
    if (negated) {
      if (spec.type !== 'bool') throw new UsageError(`--${name}: only boolean options have a --no- form; --${flagOf(spec.key)} takes a value`);
      if (value !== true) throw new UsageError(`--${name} takes no value (got "${value}"): write --no-${flagOf(spec.key)} or --${flagOf(spec.key)}=${value}`);
      out[spec.key] = false;
    } else if (spec.type === 'bool') out[spec.key] = value;
    else {
      if (value === true) throw new UsageError(`option --${name} needs a value`);
      out[spec.key] = value;
    }
  }
  return out;
}

/**
 * A closed stdout or stderr (`rt-actors start | head -2`, a log shipper that went away) must not kill
 * the server: writes to it are dropped from then on.
 */
function ignoreBrokenPipes(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') return;
      throw err;
    });
  }
}

async function start(args: string[]): Promise<number> {
  const flags = parseFlags(args);
  if (flags.has('help')) {
    process.stdout.write(startHelp());
    return EXIT.OK;
  }
  const config = loadConfig({ flags: configFlags(flags), env: process.env });
  const log = createLogger(config.logLevel, 'main', { format: config.logFormat, rate: config.logRate });
  for (const { variable, message } of unknownEnvironment(process.env)) log.warn(message, { event: 'config.unknown_env', variable });
  for (const { key, message } of ignoredOptions(config)) log.warn(message, { event: 'config.ignored', key });
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let stopping = false;
  // A signal may come while the server is still starting (a deploy stopping what it just started):
  // the handlers are in place from the first moment, and the stop waits for the start to finish.
  let stopWhenStarted: string | undefined;
  const drain = (why: string, s: NonNullable<typeof server>) => {
    log.notice(`${why}: shutting down (requests in flight get up to ${config.shutdownTimeout}s, then clients are told to reconnect)`, { event: 'server.stopping', reason: why });
    const began = Date.now();
    s.close().then(
      () => {
        const ms = Date.now() - began;
        log.notice(`stopped in ${ms} ms`, { event: 'server.stopped', ms });
        process.exit(EXIT.OK);
      },
      (err) => {
        log.error('shutdown failed', err, { event: 'server.stop_failed' });
        process.exit(EXIT.UNEXPECTED);
      },
    );
  };
  const stop = (why: string) => {
    if (stopping) {
      // Ctrl-C twice: the operator does not want to wait for the drain.
      // process.exit() would abort (uWS's handles are still open in the shards): the process kills itself.
      if (why === 'SIGINT') {
        log.notice('SIGINT again: stopping now, without waiting for the drain', { event: 'server.forced_exit' });
        // SIGKILL runs no exit handler: the compiled actors would stay in TMPDIR.
        void import('../actors/actor-modules.js')
          .then((m) => m.removeCompiledCopies())
          .finally(() => process.kill(process.pid, 'SIGKILL'));
      }
      return;
    }
    stopping = true;
    if (server) return drain(why, server);
    stopWhenStarted = why;
    log.notice(`${why} while starting: stopping as soon as the start is done`, { event: 'server.stopping', reason: why });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    const { startServer } = await import('../server.js');
    server = await startServer(config);
  } catch (err) {
    return startFailed(log, config.logFormat, err);
  }
  const shards = `${config.workers} shard${config.workers === 1 ? '' : 's'}`;
  log.notice(`rt-actors ${version} listening on ${listenHostPort(config.host, server.port)} with ${shards} (${server.acceptMode} acceptor)`, {
    event: 'server.listening',
    port: server.port,
    shards: config.workers,
    acceptor: server.acceptMode,
    pid: process.pid,
  });
  log.info(`endpoints: ${servedEndpoints(config, server.port).join(', ')}`, { event: 'server.endpoints' });
  if (server.apiKeyGenerated) log.notice(`API key (generated, shown once; set --api-key or RT_API_KEY to fix it): ${server.apiKey}`, { event: 'server.api_key_generated' });
  if (stopWhenStarted !== undefined) drain(stopWhenStarted, server);
  else if (startedByNpm()) watchParent(() => stop('parent process (npm) exited'));
  return new Promise<number>(() => {});
}

/** Whether --log-format=json (or RT_LOG_FORMAT=json) was asked for, read before the configuration is valid. */
function wantsJsonLogs(args: string[]): boolean {
  const i = args.indexOf('--log-format');
  if (args.includes('--log-format=json') || (i >= 0 && args[i + 1] === 'json')) return true;
  if (args.some((a) => a.startsWith('--log-format'))) return false;
  const env = process.env[envOf('logFormat')];
  if (env !== undefined) return env === 'json';
  return configFileLogFormat(args) === 'json';
}

/** The config file's logFormat, read on a best-effort basis (the file may be what was wrong). */
function configFileLogFormat(args: string[]): unknown {
  const j = args.indexOf('--config');
  const path = args.find((a) => a.startsWith('--config='))?.slice('--config='.length) ?? (j >= 0 ? args[j + 1] : undefined) ?? process.env[envOf('config')];
  if (!path) return undefined;
  try {
    return readConfigFile(path).logFormat;
  } catch {
    return undefined;
  }
}

/** One line for a failed start, and its exit code (EXIT). */
function startFailed(log: Logger, format: 'text' | 'json', err: unknown): number {
  const code = err instanceof ConfigError ? EXIT.CONFIG : err instanceof ListenError ? EXIT.LISTEN : EXIT.UNEXPECTED;
  const message = err instanceof Error ? err.message : String(err);
  if (format === 'json') {
    const fields: Record<string, unknown> = { event: 'server.start_failed', exit: code };
    if (err instanceof ConfigError) fields.key = err.key;
    if (code === EXIT.UNEXPECTED && err instanceof Error) fields.err = errorFields(err);
    log.error(message, fields);
  } else if (code === EXIT.UNEXPECTED && err instanceof Error && err.stack) {
    process.stderr.write(`rt-actors: unexpected error: ${err.stack.replace(/\r?\n\s*/g, ' | ')}\n`);
  } else process.stderr.write(`rt-actors: ${message}\n`);
  return code;
}

const HEALTH_HELP = `Usage: rt-actors health [options]

Asks the server running on this machine for GET /health, with the configuration 'start' reads (the
same options, RT_* environment and --config file), so it probes the port, interface and scheme
(https with --tls-cert) the server serves. Prints the status (ok, degraded, draining) and exits 0
when the server answers 200, 1 otherwise (unreachable, degraded, draining, or a bad option): for
Docker's HEALTHCHECK, Kubernetes exec probes and scripts. Gives up after 5 s.
`;

const HEALTH_TIMEOUT_MS = 5000;

async function health(args: string[]): Promise<number> {
  const flags = parseFlags(args);
  if (flags.has('help')) {
    process.stdout.write(HEALTH_HELP);
    return EXIT.OK;
  }
  const config = loadConfig({ flags: configFlags(flags), env: process.env });
  const { probeHealth, probeUrl } = await import('./health-check.js');
  const url = probeUrl(config);
  const answer = await probeHealth(url, HEALTH_TIMEOUT_MS);
  const line = `${url}: ${answer.code === 0 ? 'no answer' : answer.code} ${answer.status}`;
  if (answer.code === 200) {
    console.log(line);
    return EXIT.OK;
  }
  process.stderr.write(line + '\n');
  return EXIT.UNEXPECTED;
}

async function token(args: string[]): Promise<number> {
  const flags = parseFlags(args);
  if (flags.has('help')) {
    process.stdout.write(TOKEN_HELP);
    return 0;
  }
  const allowed = ['sub', 'channels', 'info', 'ttl', 'secret', 'config', 'help'];
  for (const k of flags.keys()) if (!allowed.includes(k)) throw new UsageError(`unknown option --${k}${didYouMean(k, allowed, (a) => `--${a}`)}; accepted options: ${allowed.map((a) => `--${a}`).join(', ')}`);
  for (const k of ['sub', 'channels', 'info', 'ttl', 'config']) if (flags.get(k) === true) throw new UsageError(`option --${k} needs a value`);
  const sub = flags.get('sub');
  if (typeof sub !== 'string' || !sub) throw new UsageError('--sub=<user id> is required');
  // The server refuses such a sub (token_invalid_claims), as it refuses a token minted expired.
  const { APP_SEPARATOR, USER_ID_SEPARATOR_RULE } = await import('../runtime/app-scope.js');
  if (sub.includes(APP_SEPARATOR)) throw new UsageError(`--sub: ${USER_ID_SEPARATOR_RULE}; the server would refuse the token (token_invalid_claims)`);
  // The configuration `start` would resolve (environment, then --config file): its secret, and the
  // audience and issuer its server requires, or the token is refused there (token_wrong_audience).
  const config = loadConfig({ flags: typeof flags.get('config') === 'string' ? { config: flags.get('config') } : {}, env: process.env });
  const secret = (flags.get('secret') as string | undefined) ?? (config.jwtSecret || undefined);
  if (!secret || secret === (true as unknown)) throw new UsageError('no secret: pass --secret=<secret>, set RT_JWT_SECRET, or give --config with a jwtSecret');
  const { signJwt, parseDuration } = await import('../auth/jwt.js');
  let ttl: number;
  try {
    ttl = parseDuration(String(flags.get('ttl') ?? '1h'));
  } catch (err) {
    throw new UsageError(`--ttl: ${/^\s*-/.test(String(flags.get('ttl'))) ? 'must be a positive duration, e.g. 15m or 1h, not a negative one' : (err as Error).message}`);
  }
  if (ttl <= 0) throw new UsageError('--ttl must be a positive duration, e.g. 15m or 1h: a token with --ttl 0 would be expired when minted');
  const claims: Record<string, unknown> = { sub, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + ttl };
  // The server accepts any one of its audiences and issuers: the first of each.
  if (config.jwtAudience.length > 0) claims.aud = config.jwtAudience[0];
  if (config.jwtIssuer.length > 0) claims.iss = config.jwtIssuer[0];
  const channels = flags.get('channels');
  if (typeof channels === 'string') claims.channels = channels.split(',').map((s) => s.trim()).filter(Boolean);
  const info = flags.get('info');
  if (typeof info === 'string') {
    try {
      claims.user_info = JSON.parse(info);
    } catch {
      throw new UsageError('--info must be JSON, e.g. --info=\'{"name":"Ada"}\'');
    }
  }
  // The warning `start` gives for this secret: a token minted with it is as guessable. Never refused
  // here, even with NODE_ENV=production, since minting a test token changes no deployment.
  const { checkJwtSecret } = await import('../auth/secret-policy.js');
  const weak = checkJwtSecret(secret, false);
  if (weak) process.stderr.write(`rt-actors: warning: ${weak}\n`);
  console.log(signJwt(claims, { secret }));
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  ignoreBrokenPipes();
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'help':
        // `rt-actors help start` is `rt-actors start --help`.
        if (rest[0] === 'start' || rest[0] === 'token' || rest[0] === 'health') return await main([rest[0], '--help']);
        if (rest[0] !== undefined) throw new UsageError(`no help for "${rest[0]}": commands are start, token, health`);
        process.stdout.write(MAIN_HELP);
        return EXIT.OK;
      case undefined:
      case '--help':
      case '-h':
        process.stdout.write(MAIN_HELP);
        return cmd === undefined ? EXIT.CONFIG : EXIT.OK;
      case '--version':
      case '-v':
        console.log(version);
        return 0;
      case 'start':
        return await start(rest);
      case 'token':
        return await token(rest);
      case 'health':
        return await health(rest);
      default:
        throw new UsageError(`unknown command "${cmd}"; commands: start, token, health`);
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      // Docker reserves a health command's exit code 2: any failure there is "unhealthy".
      if (cmd === 'health') {
        process.stderr.write(`rt-actors health: ${err.message}\n`);
        return EXIT.UNEXPECTED;
      }
      // A server meant to log JSON reports even a bad option as JSON, so its collector keeps the line.
      if (cmd === 'start' && wantsJsonLogs(rest)) {
        createLogger('error', 'main', { format: 'json' }).error(err.message, { event: 'server.start_failed', exit: EXIT.CONFIG, ...(err instanceof ConfigError ? { key: err.key } : {}) });
      } else process.stderr.write(`rt-actors: ${err.message}\n`);
      return EXIT.CONFIG;
    }
    throw err;
  }
}
