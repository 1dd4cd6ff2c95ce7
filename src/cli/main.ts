/**
 * The rt-actors command: `start` runs the server, `token` mints a test token. Flags map 1:1 to the
 * configuration schema; anything unknown or invalid exits with code 2 and says what is accepted.
 */
import { ConfigError, loadConfig } from '../config/load.js';
import { OPTIONS, envOf, flagOf, specByFlag, type ServerConfig } from '../config/schema.js';
import { startServer } from '../server.js';
import { signJwt, parseDuration } from '../auth/jwt.js';
import { version } from '../index.js';

class UsageError extends Error {}

const MAIN_HELP = `rt-actors ${version} — realtime messaging server (channel actors on worker threads)

Usage:
  rt-actors start [options]    serve WebSocket, HTTP API and health on one port
  rt-actors token [options]    mint a connection token (JWT) for testing
  rt-actors --help | --version

Run 'rt-actors <command> --help' for the options of a command.
`;

function startHelp(): string {
  const rows = OPTIONS.filter((o) => !o.hidden).map((o) => {
    const flag = `--${flagOf(o.key)}${o.type === 'bool' ? '' : '=<' + (o.type === 'enum' ? o.choices!.join('|') : o.type) + '>'}`;
    const def = o.default === '' ? '' : ` (default: ${String(o.default)})`;
    return `  ${flag}\n      ${o.doc}${def}\n      env ${envOf(o.key)}, config key "${o.key}"`;
  });
  return `Usage: rt-actors start [options]

Serves every transport on one port. Precedence: flags > RT_* environment > --config file > defaults.

Options:
${rows.join('\n')}
  --help
      show this help
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
  --config=<file>       config file to read jwtSecret from
  --help                show this help
`;

/** Parses `--key=value`, `--key value`, `--flag`, `--no-flag`. */
export function parseFlags(args: string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--') || a === '--') throw new UsageError(`unexpected argument "${a}"`);
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

function configFlags(flags: Map<string, string | true>): Partial<Record<keyof ServerConfig, unknown>> {
  const out: Partial<Record<keyof ServerConfig, unknown>> = {};
  for (const [name, value] of flags) {
    if (name === 'help') continue;
    const negated = name.startsWith('no-');
    const spec = specByFlag(name) ?? (negated ? specByFlag(name.slice(3)) : undefined);
    if (!spec) {
      const known = OPTIONS.map((o) => '--' + flagOf(o.key)).join(', ');
      throw new UsageError(`unknown option --${name}; accepted options: ${known}`);
    }
    if (spec.type === 'bool') out[spec.key] = value === true ? !negated : value;
    else {
      if (value === true) throw new UsageError(`option --${name} needs a value`);
      out[spec.key] = value;
    }
  }
  return out;
}

async function start(args: string[]): Promise<number> {
  const flags = parseFlags(args);
  if (flags.has('help')) {
    process.stdout.write(startHelp());
    return 0;
  }
  const config = loadConfig({ flags: configFlags(flags), env: process.env });
  const server = await startServer(config);
  const host = config.host || 'localhost';
  const scheme = config.tlsCert ? 's' : '';
  console.log(`rt-actors ${version} listening on ${config.host || 'all interfaces'}:${server.port} with ${config.workers} shard${config.workers === 1 ? '' : 's'} (${server.acceptMode} acceptor)`);
  console.log(`  WebSocket  ws${scheme}://${host}:${server.port}/ws`);
  console.log(`  HTTP API   http${scheme}://${host}:${server.port}/api/publish`);
  if (server.apiKeyGenerated) console.log(`  API key (generated, shown once; set --api-key or RT_API_KEY to fix it): ${server.apiKey}`);
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${sig}: shutting down (clients are told to reconnect)`);
    server.close().then(
      () => process.exit(0),
      (err) => {
        console.error('shutdown failed:', err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return new Promise<number>(() => {});
}

function token(args: string[]): number {
  const flags = parseFlags(args);
  if (flags.has('help')) {
    process.stdout.write(TOKEN_HELP);
    return 0;
  }
  const allowed = new Set(['sub', 'channels', 'info', 'ttl', 'secret', 'config']);
  for (const k of flags.keys()) if (!allowed.has(k)) throw new UsageError(`unknown option --${k}; accepted options: --sub, --channels, --info, --ttl, --secret`);
  const sub = flags.get('sub');
  if (typeof sub !== 'string' || !sub) throw new UsageError('--sub=<user id> is required');
  // The configured secret, as `start` would resolve it (environment, then --config file).
  const configured = () => loadConfig({ flags: typeof flags.get('config') === 'string' ? { config: flags.get('config') } : {}, env: process.env }).jwtSecret || undefined;
  const secret = (flags.get('secret') as string | undefined) ?? configured();
  if (!secret || secret === (true as unknown)) throw new UsageError('no secret: pass --secret=<secret>, set RT_JWT_SECRET, or give --config with a jwtSecret');
  let ttl: number;
  try {
    ttl = parseDuration(String(flags.get('ttl') ?? '1h'));
  } catch (err) {
    throw new UsageError(`--ttl: ${/^\s*-/.test(String(flags.get('ttl'))) ? 'must be a positive duration, e.g. 15m or 1h, not a negative one' : (err as Error).message}`);
  }
  if (ttl <= 0) throw new UsageError('--ttl must be a positive duration, e.g. 15m or 1h: a token with --ttl 0 would be expired when minted');
  const claims: Record<string, unknown> = { sub, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + ttl };
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
  console.log(signJwt(claims, { secret }));
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        process.stdout.write(MAIN_HELP);
        return cmd === undefined ? 2 : 0;
      case '--version':
      case '-v':
        console.log(version);
        return 0;
      case 'start':
        return await start(rest);
      case 'token':
        return token(rest);
      default:
        throw new UsageError(`unknown command "${cmd}"; commands: start, token`);
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      console.error(`rt-actors: ${err.message}`);
      return 2;
    }
    throw err;
  }
}
