/**
 * Wiring of the Redis bridge into a shard and into the main thread, kept here so the runtime files
 * only gain a few lines. With no --redis nothing here runs and the server is the embedded default.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { ConfigError, namedAsSet, optionName } from '../config/load.js';
import { RtError } from '../errors.js';
import type { ServerConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { AnyActorDefinition } from '../actors/define.js';
import type { MeshEndpoint } from '../runtime/mesh.js';
import type { SharedStats } from '../runtime/stats.js';
import type { ChannelLifecycle } from '../actors/channel-actor.js';
import type { HistoryBounds, HubBridge } from './broker.js';
import type { SharedStore } from '../runtime/context.js';
import { metrics } from '../runtime/metrics.js';
import { RedisDirectory } from './directory.js';
import { boundsFor, HistoryPatternError, parseHistoryPatterns } from './history-policy.js';
import { Keys } from './keys.js';
import { RedisBroker } from './redis-broker.js';
import { Placement, type LocalRelay } from './placement.js';
import type { LoadedActor } from '../actors/registry.js';
import { isHiddenChannel } from '../runtime/hidden-channels.js';
import { commandConnection, connectWithin, parseRedisTarget, parseSentinelTarget, RedisTargetError, type Commander, type RedisTarget } from './redis-conn.js';

/** Per-channel history bounds from --history-patterns, --history-size and --history-ttl. */
export function historyPolicy(config: ServerConfig): (channel: string, def: AnyActorDefinition) => HistoryBounds {
  const rules = parseHistoryPatterns(config.historyPatterns);
  const fallback = { size: config.historySize, ttlMs: config.historyTtl * 1000 };
  return (channel, def) => boundsFor(channel, rules, fallback, def.history);
}

/** Whether this host bridges through Redis (a --redis URL or Redis Sentinel). */
export function bridged(config: ServerConfig): boolean {
  return config.redis !== '' || config.redisSentinels.length > 0;
}

const HOST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Checks --host-id, or makes one (hostname plus a random suffix: a restarted host is a new owner). */
export function resolveHostId(config: ServerConfig): void {
  if (config.hostId) {
    if (!HOST_ID.test(config.hostId)) throw new ConfigError('hostId', `${optionName(config, 'hostId')} "${config.hostId}" must be 1-64 letters, digits, '.', '_' or '-'`);
    return;
  }
  const base = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 48) || 'host';
  config.hostId = `${base}-${randomBytes(3).toString('hex')}`;
}

/** Validates the bridge's options at start, so a typo is a start error naming the option. */
export function checkBridgeConfig(config: ServerConfig): RedisTarget | undefined {
  try {
    parseHistoryPatterns(config.historyPatterns);
  } catch (err) {
    if (err instanceof HistoryPatternError) throw new ConfigError('historyPatterns', `${optionName(config, 'historyPatterns')}: ${err.message}`);
    throw err;
  }
  if (/[{}|\s]/.test(config.redisNamespace) || config.redisNamespace === '') {
    throw new ConfigError('redisNamespace', `${optionName(config, 'redisNamespace')} must be non-empty, without spaces, braces or "|"`);
  }
  if (config.redisSentinels.length > 0) {
    if (config.redisCluster) throw new ConfigError('redisCluster', namedAsSet(config, '--redis-cluster and --redis-sentinels exclude each other: a Redis Cluster fails over by itself'));
    try {
      return parseSentinelTarget(config.redisSentinels, config.redisSentinelName, config.redis);
    } catch (err) {
      if (err instanceof RedisTargetError) throw new ConfigError(/sentinel-name/.test(err.message) ? 'redisSentinelName' : /^--redis:/.test(err.message) ? 'redis' : 'redisSentinels', namedAsSet(config, err.message));
      throw err;
    }
  }
  if (!config.redis) {
    if (config.redisCluster) throw new ConfigError('redisCluster', namedAsSet(config, '--redis-cluster needs --redis (or RT_REDIS_URL) naming at least one cluster node'));
    return undefined;
  }
  try {
    return parseRedisTarget(config.redis, config.redisCluster);
  } catch (err) {
    if (err instanceof RedisTargetError) throw new ConfigError('redis', namedAsSet(config, err.message));
    throw err;
  }
}

const START_TIMEOUT_MS = 5000;

function versionAtLeast(v: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = v.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

/**
 * Why the first connection failed, in words that point at the fix: a Redis that answers but refuses us,
 * or is not the Cluster or Sentinel the options name, is not down.
 */
async function startFailure(target: RedisTarget, err: unknown): Promise<string> {
  const reason = String((err as Error)?.message ?? err).replace(/\.+$/, '');
  if (target.sentinel && /unknown command .sentinel./i.test(reason)) {
    return `${target.display}: an address in --redis-sentinels is a plain Redis, not a Sentinel (it does not know the SENTINEL command): give the sentinels' addresses (port 26379 by default)`;
  }
  // ioredis says "All sentinels are unreachable. Retrying …" though they answered: they monitor no such master.
  if (target.sentinel && /No such master with that name/i.test(reason)) {
    return `${target.display}: the sentinels answer but monitor no master named "${target.sentinel.name}": give --redis-sentinel-name as in their 'sentinel monitor <name> …' line (SENTINEL MASTERS lists them)`;
  }
  if (target.cluster && /slots cache|None of startup nodes/i.test(reason)) {
    if (await clusterDisabled(target)) {
      const many = target.nodes.length > 1 ? " (several URLs in --redis mean a Cluster's nodes)" : '';
      return `Redis at ${target.display} is not a Redis Cluster (cluster_enabled:0): leave out --redis-cluster and give one URL${many}`;
    }
    // The driver's words name neither the nodes it tried nor why each failed (refused, unknown host…).
    const down = await unreachableNodes(target);
    if (down.length === target.nodes.length) {
      return `cannot reach any node of the Redis Cluster at ${target.display}: ${down.join('; ')}. Start Redis or fix --redis / RT_REDIS_URL; without --redis the server runs as a single host`;
    }
  }
  if (/^(NOAUTH|WRONGPASS)\b/.test(reason)) {
    // With sentinels the master's address is theirs to give: --redis carries only the credentials.
    const form = target.sentinel ? 'redis://:password@/ or redis://user:password@/, beside --redis-sentinels' : 'redis://:password@host:port, or redis://user:password@host:port';
    return `Redis at ${target.display} refused our credentials (${reason}): give the password in --redis (${form})`;
  }
  if (/^NOPERM\b/.test(reason)) return `Redis at ${target.display} refused a command to our user (${reason}): the ACL user needs the commands, keys and channels of --redis-namespace (and of --redis-prefix for Laravel)`;
  if (/DB index is out of range/.test(reason)) {
    return `Redis at ${target.display} has no database ${target.options.db} (${reason}): its 'databases' setting (16 by default) bounds the number in --redis`;
  }
  // The driver's own words here end "Please report this", as if the driver were at fault.
  const notRedis = /Protocol error, got "(.)" as reply type byte/.exec(reason);
  if (notRedis) {
    const http = notRedis[1] === 'H' ? ', as an HTTP server does' : '';
    return `the server at ${target.display} is not a Redis: it answered with "${notRedis[1]}"${http}, where Redis answers "+", "-", ":", "$" or "*". Check the host and port in --redis / RT_REDIS_URL`;
  }
  if (/^no answer within/.test(reason)) {
    return `the server at ${target.display} took the connection but did not answer as Redis (${reason}): it is not a Redis, expects TLS (rediss://), or is stopped or overloaded. Check --redis / RT_REDIS_URL`;
  }
  // A plain-text Redis never completes the TLS handshake, and the driver reports only a timeout.
  if (target.options.tls && /ETIMEDOUT|wrong version number|ECONNRESET|socket disconnected before secure/i.test(reason)) {
    return `no TLS session with Redis at ${target.display} (${reason}): a Redis without TLS on that port never completes the handshake (write redis:// for it), or the host does not answer. Check --redis / RT_REDIS_URL`;
  }
  return `cannot reach Redis at ${target.display}: ${reason}. Start Redis or fix --redis / RT_REDIS_URL / --redis-sentinels; without --redis the server runs as a single host`;
}

/** Whether the first node of a Cluster target answers as a Redis without cluster mode (ioredis only says it found no slots). */
async function clusterDisabled(target: RedisTarget): Promise<boolean> {
  const probe = commandConnection({ ...target, cluster: false }, 'rt-actors:probe');
  probe.on('error', () => {});
  try {
    await connectWithin(probe, 2000, true);
    return /cluster_enabled:0/.test(await probe.info('cluster'));
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

/** Each Cluster seed that a plain connection cannot reach, as "host:port (why)". */
async function unreachableNodes(target: RedisTarget): Promise<string[]> {
  const out = await Promise.all(
    target.nodes.map(async (node) => {
      const probe = commandConnection({ ...target, cluster: false, nodes: [node] }, 'rt-actors:probe');
      probe.on('error', () => {});
      try {
        await connectWithin(probe, 2000, true);
        return undefined;
      } catch (err) {
        return `${node.host}:${node.port} (${String((err as Error)?.message ?? err).replace(/\.+$/, '')})`;
      } finally {
        probe.disconnect();
      }
    }),
  );
  return out.filter((d): d is string => d !== undefined);
}

/**
 * The main thread's connection: checked at start (reachable, recent enough, cluster or not as
 * configured) so a wrong --redis stops the start with a clear message, and kept to answer the
 * embedding API's cluster-wide queries (server.channels(), server.presence()).
 */
/**
 * Keeps the heartbeat of a crashed shard's node alive from the main thread until its replacement has
 * re-registered the survivors' subscriptions and retired it (RedisBroker.retire). Left to expire, a
 * replacement slower to start than --presence-ttl had the node swept first: the survivors' members
 * left and joined again. The host is alive; only the sweep of a whole dead host should remove it.
 */
export interface NodeKeeper {
  /** Refreshes `node`'s heartbeat (while it still exists) until the returned function is called. */
  hold(node: string): () => void;
}

export async function openMainBridge(config: ServerConfig, target: RedisTarget): Promise<{ bridge: HubBridge; keeper: NodeKeeper; close(): Promise<void> }> {
  const cmd: Commander = commandConnection(target, 'rt-actors:main');
  cmd.on('error', () => {});
  const fail = (msg: string): never => {
    cmd.disconnect();
    throw new ConfigError('redis', msg);
  };
  try {
    await connectWithin(cmd, START_TIMEOUT_MS, true);
  } catch (err) {
    fail(await startFailure(target, err));
  }
  let info = '';
  try {
    info = target.cluster ? String(await (cmd as { cluster(sub: 'INFO'): Promise<unknown> }).cluster('INFO')) + String(await cmd.info('server')) : await cmd.info();
  } catch (err) {
    fail(`Redis at ${target.display} answered INFO with an error: ${(err as Error).message}`);
  }
  const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? '0';
  const need = target.cluster ? [7, 0] : [6, 2];
  if (!versionAtLeast(version, need[0]!, need[1]!)) {
    fail(`Redis ${version} at ${target.display} is too old: the bridge needs ${need.join('.')} or later (${target.cluster ? 'sharded pub/sub' : 'XTRIM MINID'})`);
  }
  if (target.cluster && !/cluster_state:ok/.test(info)) fail(`the Redis Cluster at ${target.display} is not ready (cluster_state is not ok)`);
  if (!target.cluster && /cluster_enabled:1/.test(info)) fail(`Redis at ${target.display} is a cluster node: add --redis-cluster (or list several nodes in --redis)`);
  const keys = new Keys(config.redisNamespace, config.redisPrefix, target.options.db);
  // The main thread has no broker whose figures a stats tick feeds to /metrics: its failures count
  // straight into its own block (bound by the supervisor before any query runs).
  const bridge = new RedisDirectory(cmd, keys, config.presenceTtl * 1000 * 2, () => metrics().inc('rt_redis_errors_total'));
  const ttl = config.presenceTtl * 1000;
  const held = new Set<NodeJS.Timeout>();
  const keeper: NodeKeeper = {
    hold: (node) => {
      // XX: once retired (key deleted) or swept, the node must not come back.
      const beat = () => void cmd.set(keys.node(node), String(Date.now()), 'PX', ttl, 'XX').catch(() => {});
      beat();
      const timer = setInterval(beat, Math.max(100, Math.floor(ttl / 3)));
      timer.unref();
      held.add(timer);
      return () => {
        clearInterval(timer);
        held.delete(timer);
      };
    },
  };
  return {
    bridge,
    keeper,
    close: async () => {
      for (const timer of held) clearInterval(timer);
      cmd.disconnect();
    },
  };
}

export interface ShardBridge {
  broker: RedisBroker;
  /** Custom actors' one activation cluster-wide: wrap the loaded actors with `place`. */
  place(loaded: LoadedActor[]): LoadedActor[];
  /** The shard's actors and compute pool, for the activations' pushes, kicks and compute tasks. */
  attach(local: LocalRelay): void;
  hub: HubBridge;
  /** Values every host sees (Socket.IO sessions saved for recovery). */
  store: SharedStore;
  /** What the shard's ActorHost env gains. */
  actorEnv: {
    broker: RedisBroker;
    resync(thread: number, channel: string): void;
    log(msg: string, err?: unknown): void;
  };
  /** `drainMs`: how long a graceful close lets placed actors' running turns finish (default 2 s). */
  close(graceful: boolean, drainMs?: number): Promise<void>;
}

/**
 * A shard incarnation's node id in Redis (docs/scaling.md): host id first, so an operator reading Redis
 * sees which host a node belongs to. Made by the supervisor, which keeps a crashed shard's node alive
 * until its replacement has taken its place (Supervisor.shardEnded).
 */
export function shardNodeId(config: ServerConfig, shard: number): string {
  return `${config.hostId || hostname()}:${shard}:${randomBytes(3).toString('hex')}`;
}

/** The shard's broker: its own connections, created in this thread. */
export async function startShardBridge(
  config: ServerConfig,
  shard: number,
  node: string,
  mesh: MeshEndpoint,
  log: Logger,
  stats: SharedStats,
  /** Cluster-wide channel lifecycle this shard's broker decided (Pusher webhooks). */
  observe?: (e: ChannelLifecycle) => void,
  /** Channels whose cluster-wide subscriber count is announced (RedisBrokerOptions.countWanted). */
  countWanted?: (channel: string) => boolean,
): Promise<ShardBridge | undefined> {
  const target = checkBridgeConfig(config);
  if (!target) return undefined;
  const broker = new RedisBroker({
    target,
    keys: new Keys(config.redisNamespace, config.redisPrefix, target.options.db),
    node,
    presenceTtlMs: config.presenceTtl * 1000,
    leaseTtlMs: config.leaseTtl * 1000,
    maxPayload: config.maxPayload,
    log,
    onLeaseLost: (ch) => placement?.leaseLost(ch),
    onLifecycle: observe,
    countWanted,
    onControl: (n) => {
      mesh.notify(shard, n);
      // The main thread has no Redis subscription of its own; shard 0 relays to its in-process clients.
      if (shard === 0) mesh.notify(mesh.shards, n);
    },
  });
  await broker.start(START_TIMEOUT_MS);
  const policy = historyPolicy(config);
  // A placed actor's hook failures are logged here (hook-runner.ts): the user's error with its stack.
  const placementLog = (msg: string, err?: unknown, fields: Record<string, unknown> = {}) =>
    err === undefined ? log.warn(msg, fields) : err instanceof RtError ? log.warn(msg, err.message, fields) : log.error(msg, err, fields);
  const placement: Placement | undefined = new Placement({
    broker,
    historyFor: policy,
    log: placementLog,
    mailboxSize: config.actorMailboxSize,
    hookTimeoutMs: config.actorHookTimeout * 1000,
  });
  const timer = setInterval(() => {
    stats.set(shard, 'redisUp', broker.up ? 1 : 0);
    stats.set(shard, 'redisInvalid', broker.stats.invalid);
    stats.set(shard, 'redisRecovered', broker.stats.recovered);
    stats.set(shard, 'redisResyncs', broker.stats.resyncs);
    stats.set(shard, 'redisErrors', broker.stats.errors);
    stats.set(shard, 'redisTracked', placement.trackedChannels);
  }, 250);
  timer.unref();
  stats.set(shard, 'redisUp', broker.up ? 1 : 0);
  const kv = (key: string) => `${config.redisNamespace}:kv:{${key}}`;
  return {
    broker,
    hub: broker.directory,
    store: {
      put: async (key: string, value: Uint8Array, ttlMs: number) => {
        await broker.cmd.set(kv(key), Buffer.from(value.buffer, value.byteOffset, value.byteLength), 'PX', Math.max(1, Math.round(ttlMs)));
      },
      take: (key: string) => broker.cmd.getdelBuffer(kv(key)),
    },
    place: (loaded) => {
      // GET /api/channels/:name says `leased` for these channels before any activation (directory.ts).
      broker.directory.servedByActor = (ch) => !isHiddenChannel(ch) && loaded.some((a) => a.matches(ch));
      return placement.place(loaded);
    },
    attach: (local) => placement.attach(local),
    actorEnv: {
      broker,
      resync: (t, ch) => mesh.notify(t, { t: 'resync!', ch }),
      log: (msg, err, fields = {}) => (err === undefined ? log.warn(msg, fields) : log.warn(msg, err instanceof Error ? err.message : err, fields)),
    },
    close: async (graceful, drainMs) => {
      clearInterval(timer);
      if (!graceful) broker.freeze();
      // On a crash too (without waiting for running turns): a placed actor's lease is handed over now,
      // not left to expire while its channel's events wait.
      await placement.close(graceful, drainMs).catch(() => {});
      await broker.close(graceful);
    },
  };
}
