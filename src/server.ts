/**
 * createServer: the embeddable server. The CLI is a thin layer over this.
 */
// First: sets uWS's header size limit, which its addon reads once when loaded.
import './transports/uws-header-limit.js';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { loadConfig, ConfigError, ignoredOptions, namedAsSet, optionName, unknownEnvironment } from './config/load.js';
import type { ServerConfig } from './config/schema.js';
import { createJwtVerifier, verifierOptions } from './auth/jwt.js';
import { checkApiKey, checkDashboardToken, checkJwtSecret } from './auth/secret-policy.js';
import { configureLogs, createLogger } from './log.js';
import { ProxyTrust } from './security/client-ip.js';
import { originPatternProblem } from './security/origins.js';
import { describeActors, loadActors, shadowedActors } from './actors/registry.js';
import { loadHandlers } from './actors/handlers.js';
import { listTasks, unloadedFiles } from './actors/folder.js';
import { holdActorModules } from './actors/actor-modules.js';
import { checkSocketIoConfig } from './transports/socketio/index.js';
import { checkPusherConfig } from './transports/pusher/index.js';
import { Supervisor } from './runtime/supervisor.js';
import { checkBridgeConfig, openMainBridge, resolveHostId } from './bridge/setup.js';
import { MemoryClient, type MemoryIdentity } from './transports/memory.js';
import type { ChannelInfo } from './runtime/messages.js';
import type { Member } from './protocol/native.js';

export type ServerOptions = Partial<{ [K in keyof ServerConfig]: ServerConfig[K] | string }> & {
  /** Environment to read RT_* variables from; defaults to process.env. Pass {} to ignore it. */
  env?: Record<string, string | undefined>;
} & ThreadOptions;

/** How the server's own threads start; for embedding code, not configuration (no flag or RT_* variable). */
export interface ThreadOptions {
  /**
   * Node options for the server's threads (shards and compute pools), as Worker's `execArgv`. Default:
   * Node's, i.e. this process's own — including the module loaders it runs under (a test runner's,
   * tsx, ts-node), which every thread then starts again for itself: under tap's, a shard took about
   * twice as long to load. Pass [] (or only the options the threads need) when the server is embedded
   * in such a process. TypeScript files in `--actors` do not depend on it: they are compiled without a loader.
   */
  threadExecArgv?: string[];
}

export interface RtServer {
  readonly port: number;
  readonly config: ServerConfig;
  /** The HTTP API key (generated when none was configured). */
  readonly apiKey: string;
  readonly apiKeyGenerated: boolean;
  /** 'descriptor' (main thread accepts and hands sockets over) or 'reuseport'. */
  readonly acceptMode: 'descriptor' | 'reuseport';
  /** Publishes to a channel from server code. */
  publish(channel: string, event: string, data: unknown): Promise<{ offset: number }>;
  /** Sends to every connection of a user, on every shard. */
  publishToUser(user: string, event: string, data: unknown): void;
  /** An in-process client (memory transport). */
  connect(identity?: MemoryIdentity): MemoryClient;
  channels(prefix?: string): Promise<ChannelInfo[]>;
  presence(channel: string): Promise<Member[]>;
  /** Kills shard `i` as a crash would; it is replaced when restartShards is on. For tests. */
  crashShard(i: number): void;
  /** Runs a full GC in every thread when the process was started with --expose-gc (memory benchmarks); resolves with the JS heap in use across threads. */
  collectGarbage(): Promise<number>;
  close(): Promise<void>;
}

/** A public key option may be the PEM itself or a path to it. */
function resolvePublicKey(cfg: ServerConfig): void {
  if (cfg.jwtPublicKey && !cfg.jwtPublicKey.includes('-----BEGIN')) {
    try {
      cfg.jwtPublicKey = readFileSync(cfg.jwtPublicKey, 'utf8');
    } catch (err) {
      throw new ConfigError('jwtPublicKey', `cannot read ${optionName(cfg, 'jwtPublicKey')} file ${cfg.jwtPublicKey}: ${(err as Error).message}`);
    }
  }
  try {
    createJwtVerifier(verifierOptions(cfg));
  } catch (err) {
    const key = cfg.jwksUrl && /JWKS/.test((err as Error).message) ? 'jwksUrl' : 'jwtPublicKey';
    throw new ConfigError(key, `${optionName(cfg, key)}: ${(err as Error).message}`);
  }
}

/** TLS files are checked here so a typo is a start-up error naming the file, not a shard that cannot start. */
function checkTls(cfg: ServerConfig): void {
  if (!cfg.tlsCert && !cfg.tlsKey) return;
  if (!cfg.tlsCert || !cfg.tlsKey) throw new ConfigError(cfg.tlsCert ? 'tlsKey' : 'tlsCert', namedAsSet(cfg, `TLS needs both --tls-cert and --tls-key: ${cfg.tlsCert ? '--tls-cert' : '--tls-key'} is set alone`));
  for (const key of ['tlsCert', 'tlsKey'] as const) {
    let text: string;
    try {
      text = readFileSync(cfg[key], 'utf8');
    } catch (err) {
      throw new ConfigError(key, `cannot read ${optionName(cfg, key)} file ${cfg[key]}: ${(err as Error).message}`);
    }
    if (!text.includes('-----BEGIN')) throw new ConfigError(key, `${optionName(cfg, key)} file ${cfg[key]} is not a PEM file`);
  }
  try {
    createSecureContext({ cert: readFileSync(cfg.tlsCert), key: readFileSync(cfg.tlsKey), passphrase: cfg.tlsPassphrase || undefined });
  } catch (err) {
    const why = (err as Error).message;
    // OpenSSL names neither file: say which pair, and what the usual causes read like.
    const hint = /bad decrypt|passphrase/i.test(why) ? ' (wrong or missing --tls-passphrase?)' : /mismatch/i.test(why) ? ' (the key is not the certificate\'s)' : '';
    throw new ConfigError('tlsKey', `TLS certificate ${cfg.tlsCert} and key ${cfg.tlsKey} rejected: ${why}${hint}`);
  }
}

export async function createServer(options: ServerOptions = {}): Promise<RtServer> {
  const { env = process.env, threadExecArgv, ...code } = options;
  const config = loadConfig({ code: code as Record<string, unknown>, env });
  const log = createLogger(config.logLevel, 'main', { format: config.logFormat });
  for (const { variable, message } of unknownEnvironment(env)) log.warn(message, { event: 'config.unknown_env', variable });
  for (const { key, message } of ignoredOptions(config)) log.warn(message, { event: 'config.ignored', key });
  if (threadExecArgv !== undefined && !(Array.isArray(threadExecArgv) && threadExecArgv.every((a) => typeof a === 'string'))) {
    throw new ConfigError('threadExecArgv', `threadExecArgv must be an array of Node options (strings), e.g. [] or ['--enable-source-maps'], not ${JSON.stringify(threadExecArgv)?.slice(0, 80)}`);
  }
  return startServer(config, { threadExecArgv });
}

export async function startServer(config: ServerConfig, threads: ThreadOptions = {}): Promise<RtServer> {
  // This start compiles the actors folder as it is now, and its copies go when the server closes.
  const release = config.actors ? holdActorModules(config.actors) : () => {};
  try {
    return await startHolding(config, threads, release);
  } catch (err) {
    release();
    throw err;
  }
}

async function startHolding(config: ServerConfig, threads: ThreadOptions, release: () => void): Promise<RtServer> {
  // Before anything logs: every line of this thread in the configured format.
  configureLogs({ format: config.logFormat, rate: config.logRate });
  const weakSecret = checkJwtSecret(config.jwtSecret, process.env.NODE_ENV === 'production');
  if (weakSecret) createLogger(config.logLevel, 'main').warn(weakSecret);
  const weakKey = checkApiKey(config.apiKey);
  if (weakKey) createLogger(config.logLevel, 'main').warn(weakKey, { event: 'config.weak_api_key' });
  const weakToken = config.dashboard ? checkDashboardToken(config.dashboardToken) : undefined;
  if (weakToken) createLogger(config.logLevel, 'main').warn(weakToken, { event: 'config.weak_dashboard_token' });
  resolvePublicKey(config);
  try {
    new ProxyTrust(config.trustProxy);
  } catch (err) {
    throw new ConfigError('trustProxy', `${optionName(config, 'trustProxy')}: ${(err as Error).message}`);
  }
  checkTls(config);
  for (const entry of config.allowedOrigins) {
    const problem = originPatternProblem(entry);
    if (problem) throw new ConfigError('allowedOrigins', `${optionName(config, 'allowedOrigins')}: ${problem}`);
  }
  // Load actors once here so a broken actor file fails the start with its own error, not in a worker.
  let actors: Awaited<ReturnType<typeof loadActors>> = [];
  if (config.actors) {
    try {
      actors = await loadActors(config.actors);
    } catch (err) {
      throw new ConfigError('actors', namedAsSet(config, (err as Error).message));
    }
    const files = actors.map((a) => a.file.slice(a.file.lastIndexOf('/') + 1));
    createLogger(config.logLevel, 'main').info(`loaded ${files.length} channel actor(s) from ${config.actors}${files.length ? ': ' + files.join(', ') : ''}`, { event: 'actors.loaded', folder: config.actors, files });
  }
  await checkSocketIoConfig(config);
  checkPusherConfig(config);
  if (config.actors) {
    // What was loaded, once (every shard loads the same files).
    const log = createLogger(config.logLevel, 'main');
    for (const line of describeActors(actors)) log.info(line);
    for (const line of shadowedActors(actors)) log.warn(line);
    for (const name of unloadedFiles(config.actors)) {
      log.warn(`${config.actors}: ${name} is not loaded: actor, handler and task files are .ts, .mts, .js or .mjs (ES modules)`, { event: 'actors.not_loaded', file: name });
    }
    for (const line of (await loadHandlers(config.actors)).summary) log.info(line);
    for (const [name, file] of listTasks(config.actors)) log.info(`compute task ${name}: ${file}`);
  }
  // Redis bridge: a bad option or an unreachable Redis stops the start here, with a clear message.
  resolveHostId(config);
  const redisTarget = checkBridgeConfig(config);
  const main = redisTarget ? await openMainBridge(config, redisTarget) : undefined;
  const apiKeyGenerated = !config.apiKey;
  const apiKey = config.apiKey || randomBytes(24).toString('base64url');
  const sup = new Supervisor(config, apiKey, main?.bridge, threads.threadExecArgv, main?.keeper);
  try {
    await sup.start();
  } catch (err) {
    await sup.stop().catch(() => {});
    await main?.close();
    throw err;
  }
  const hub = sup.hub;
  return {
    get port() {
      return sup.port;
    },
    config,
    apiKey,
    apiKeyGenerated,
    acceptMode: sup.mode,
    publish: (channel, event, data) => hub.publish(channel, event, data, 'server'),
    publishToUser: (user, event, data) => hub.publishToUser(user, event, data),
    connect: (identity) => new MemoryClient(hub, identity),
    channels: (prefix) => hub.channels(prefix),
    presence: (channel) => hub.presence(channel).then((r) => r.members),
    crashShard: (i) => sup.crashShard(i),
    collectGarbage: () => sup.collectGarbage(),
    close: async () => {
      try {
        await sup.stop();
        await main?.close();
      } finally {
        release();
      }
    },
  };
}
