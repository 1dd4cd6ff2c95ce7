/**
 * ioredis connections for the bridge. Every thread that talks to Redis makes its own (ioredis objects
 * never cross threads): a command connection (a Redis, or a Cluster) and a SubscriberPool.
 *
 * Commands fail fast while Redis is unreachable (no offline queue, no silent re-send of a command whose
 * reply was lost), so a publish either returns its offset or an error — never hangs, never doubles.
 */
import { EventEmitter } from 'node:events';
import { Redis, Cluster, SentinelConnector, type RedisOptions } from 'ioredis';
import { slotOf } from './keys.js';

export interface RedisTarget {
  cluster: boolean;
  nodes: { host: string; port: number }[];
  options: RedisOptions;
  /** For messages: the URL(s) as given, without credentials. */
  display: string;
  /** Redis Sentinel: connections ask these for the current master of `name` (and follow failovers). */
  sentinel?: { sentinels: { host: string; port: number }[]; name: string };
}

export class RedisTargetError extends Error {}

/** Parses `--redis` (one URL, `host:port`, or a comma-separated list meaning a cluster). */
export function parseRedisTarget(spec: string, cluster: boolean): RedisTarget {
  const parts = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new RedisTargetError('--redis is empty');
  const options: RedisOptions = {};
  const nodes: { host: string; port: number }[] = [];
  const shown: string[] = [];
  for (const p of parts) {
    let url: URL;
    // `redis//host:port`, `redis:/host`: a scheme mistyped, which would read as host "redis" and a database
    // (`redis:6379` is host "redis", a compose service, and stays one).
    if (/^rediss?(:\/(?!\/)|\/\/)/i.test(p)) throw new RedisTargetError(`--redis: "${p.replace(/[^@/]*@/, '…@')}" is not a Redis URL: write the scheme as redis:// (or give host:port)`);
    try {
      // Any scheme (RFC 3986: letters, digits, '+', '-', '.'): `redis-cluster://` or `redis+sentinel://`,
      // as other clients spell them, read as a host named after the scheme and a database "/host:port".
      url = new URL(/^[a-z][a-z\d+.-]*:\/\//i.test(p) ? p : `redis://${p}`);
    } catch {
      // Credentials masked: this line goes to logs. An unencoded '#' or '?' in a password lands here.
      const shown = p.replace(/^([a-z]+:\/\/)?[^@/]*@/i, (_m, scheme: string | undefined) => `${scheme ?? ''}…@`);
      throw new RedisTargetError(`--redis: "${shown}" is not a Redis URL (expected redis://host:port or host:port; in a password, write '?' as %3F, '#' as %23 and '/' as %2F)`);
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      const hint = /cluster/i.test(url.protocol) ? '; a Redis Cluster is several comma-separated URLs, or one with --redis-cluster' : /sentinel/i.test(url.protocol) ? '; sentinels go in --redis-sentinels' : '';
      throw new RedisTargetError(`--redis: unsupported scheme ${url.protocol} (use redis:// or rediss://${hint})`);
    }
    // Options in a query (`?db=3`, `?password=…`, as other clients take them) were ignored: a host on
    // database 0 beside hosts on database 3 bridges with nobody, silently.
    if (url.search || url.hash) {
      // Named, not shown: a query may hold a password.
      const what = url.search ? `a query (${[...url.searchParams.keys()].join(', ') || '?'})` : 'a fragment (#…)';
      throw new RedisTargetError(`--redis: ${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname} has ${what}, which rt-actors does not read: give the database as the path (redis://host:port/3) and credentials before the host (redis://:password@host:port); in a password, write '?' as %3F and '#' as %23`);
    }
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port ? Number(url.port) : 6379;
    if (!host || !Number.isInteger(port) || port <= 0 || port > 65535) throw new RedisTargetError(`--redis: "${p}" has no valid host and port`);
    nodes.push({ host, port });
    try {
      if (url.username) options.username = decodeURIComponent(url.username);
      if (url.password) options.password = decodeURIComponent(url.password);
    } catch {
      // A '%' not followed by two hex digits (a password with a literal '%'): URIError was an
      // "unexpected error" (exit 1) with the stack. Credentials masked, as above.
      throw new RedisTargetError(`--redis: the user name or password in "${url.protocol}//…@${url.host}" has a '%' that is not a percent-escape: write '%' as %25`);
    }
    if (url.protocol === 'rediss:') options.tls = {};
    const db = url.pathname.replace(/^\//, '');
    if (db) {
      if (!/^\d+$/.test(db)) throw new RedisTargetError(`--redis: database "${db}" must be a number`);
      options.db = Number(db);
    }
    shown.push(`${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`);
  }
  const isCluster = cluster || nodes.length > 1;
  if (isCluster && options.db) throw new RedisTargetError('--redis: a Redis Cluster has only database 0');
  return { cluster: isCluster, nodes, options, display: shown.join(',') };
}

/**
 * Parses `--redis-sentinels` (`host:port,…`) and `--redis-sentinel-name`. `--redis`, when also given,
 * contributes only its credentials, database and TLS: the sentinels name the master's address.
 */
export function parseSentinelTarget(sentinels: readonly string[], name: string, redis: string): RedisTarget {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new RedisTargetError(`--redis-sentinel-name: "${name}" is not a master name (letters, digits, '.', '_', '-')`);
  const list: { host: string; port: number }[] = [];
  for (const raw of sentinels) {
    const m = /^\[?([^\]\s]+?)\]?:(\d{1,5})$/.exec(raw.trim());
    const port = m ? Number(m[2]) : 0;
    if (!m || port <= 0 || port > 65535) throw new RedisTargetError(`--redis-sentinels: "${raw}" is not host:port`);
    list.push({ host: m[1]!, port });
  }
  if (list.length === 0) throw new RedisTargetError('--redis-sentinels is empty');
  // The master's host comes from the sentinels, so the documented form names none (`redis://:pw@/2`):
  // a placeholder host lets the URL parse; only its credentials, database and TLS are kept.
  const base = redis ? parseRedisTarget(redis.trim().replace(/^(rediss?:\/\/(?:[^@/]*@)?)(?=\/|$)/i, '$1sentinel-master'), false) : undefined;
  if (base?.cluster) throw new RedisTargetError('--redis lists several nodes, but with --redis-sentinels it only carries credentials: give one URL');
  return {
    cluster: false,
    nodes: [],
    options: base?.options ?? {},
    display: `sentinels ${list.map((s) => `${s.host}:${s.port}`).join(',')} (master ${name})`,
    sentinel: { sentinels: list, name },
  };
}

/** Reconnect soon after a blip, then back off to every 2 s while Redis stays away. */
const retryStrategy = (times: number): number => Math.min(100 * 2 ** Math.min(times, 5), 2000);

function baseOptions(target: RedisTarget, name: string): RedisOptions {
  return {
    ...target.options,
    connectionName: name,
    lazyConnect: true,
    enableOfflineQueue: false,
    // In-flight commands fail when the connection drops instead of being re-sent: a publish whose reply
    // was lost must not run twice.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
    connectTimeout: 3000,
    commandTimeout: 5000,
    retryStrategy,
  };
}

/**
 * ioredis' failover detector keeps a client on every sentinel without an 'error' listener: while one
 * sentinel is down — a state Sentinel is built to tolerate — each of its retries (once a minute, per
 * connection) printed "[ioredis] Unhandled error event" and a stack trace to stderr, outside the log.
 * Those clients only watch for +switch-master; the connection to the master reports what matters, and
 * a master nobody can name fails the start or the reconnect with its own message.
 */
class QuietSentinelConnector extends SentinelConnector {
  constructor(options: unknown) {
    super(options as ConstructorParameters<typeof SentinelConnector>[0]);
  }
}
{
  type Connect = (this: SentinelConnector, ...args: unknown[]) => EventEmitter;
  const proto = SentinelConnector.prototype as unknown as { connectToSentinel: Connect };
  const connect = proto.connectToSentinel;
  // A private method of ioredis 5: should a later version rename it, the stock behaviour stays (noisy
  // stderr while a sentinel is down), rather than a connector that cannot connect.
  if (typeof connect === 'function') {
    (QuietSentinelConnector.prototype as unknown as { connectToSentinel: Connect }).connectToSentinel = function (...args) {
      const client = connect.apply(this, args);
      client?.on?.('error', () => {});
      return client;
    };
  }
}

/** Where a single-Redis connection goes: the --redis node, or whichever master the sentinels name. */
function address(target: RedisTarget): RedisOptions {
  if (!target.sentinel) return { host: target.nodes[0]!.host, port: target.nodes[0]!.port };
  return {
    sentinels: target.sentinel.sentinels,
    name: target.sentinel.name,
    role: 'master',
    // Learn of a failover from the sentinels' +switch-master at once rather than from the next error.
    failoverDetector: true,
    Connector: QuietSentinelConnector,
    sentinelRetryStrategy: retryStrategy,
    // A demoted master answers writes with READONLY until Sentinel's CLIENT KILL: reconnect (through
    // the sentinels, to the new master) instead of failing writes until then.
    reconnectOnError: (err: Error) => /READONLY/.test(err.message),
  };
}

export type Commander = Redis | Cluster;

export function commandConnection(target: RedisTarget, name: string): Commander {
  const opts = baseOptions(target, name);
  if (!target.cluster) return new Redis({ ...opts, ...address(target) });
  const { lazyConnect, enableOfflineQueue, retryStrategy: _r, ...redisOptions } = opts;
  return new Cluster(target.nodes, {
    lazyConnect,
    enableOfflineQueue,
    enableAutoPipelining: true,
    clusterRetryStrategy: retryStrategy,
    slotsRefreshTimeout: 2000,
    redisOptions,
  });
}

/**
 * Connects with a deadline; rejects with the reason Redis gave (or the timeout). `failFast` rejects at
 * the first connection error instead of waiting for reconnect attempts (the start-up check).
 */
export async function connectWithin(conn: Commander, ms: number, failFast = false): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let lastError: Error | undefined;
  let fail: ((err: Error) => void) | undefined;
  const onError = (err: Error) => {
    lastError = err;
    if (failFast) fail?.(err);
  };
  conn.on('error', onError);
  try {
    await Promise.race([
      new Promise<never>((_, reject) => (fail = reject)),
      conn.status === 'ready'
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            conn.once('ready', () => resolve());
            if (conn.status === 'wait') conn.connect().catch((err: Error) => (lastError = err));
          }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(lastError ?? new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    conn.off('error', onError);
  }
}

interface SubConn {
  key: string;
  redis: Redis;
  /** Redis channel → sharded (SSUBSCRIBE) or classic (SUBSCRIBE). */
  channels: Map<string, boolean>;
  /** Has been ready once: until then it is still making its first connection. */
  connected: boolean;
}

/** How long a subscribe waits for a subscriber connection made for it (a master new to this thread). */
const FIRST_CONNECT_MS = 2000;

/**
 * The Redis pub/sub subscriptions of one thread. On a single Redis: one connection. On a Cluster: one
 * connection per master, each channel on the master owning its slot (sharded pub/sub must be consumed
 * there; classic channels go there too, which any node accepts). Subscriptions are tracked here and
 * restored on every reconnect, after which 'resubscribed' names the channels so their owners can look
 * for what they missed.
 *
 * Events: 'message' (channel: string, payload: Buffer), 'resubscribed' (channels: string[]),
 * 'up' / 'down' (connection state).
 */
export class SubscriberPool extends EventEmitter {
  private readonly conns = new Map<string, SubConn>();
  /** Cluster: slot → node key ("host:port"). */
  private slots: string[] = [];
  private closed = false;
  private refreshTimer?: NodeJS.Timeout;

  constructor(private readonly target: RedisTarget, private readonly name: string, private readonly cmd: Commander) {
    super();
  }

  /** Connects; may be called again after a failure. */
  async start(timeoutMs: number): Promise<void> {
    if (this.target.cluster) {
      await this.refreshSlots();
      await Promise.all([...new Set(this.slots)].filter(Boolean).map((key) => connectWithin(this.conn(key).redis, timeoutMs)));
      if (!this.refreshTimer) {
        // A failover or resharding moves slots: look again now and then, and move channels with them.
        this.refreshTimer = setInterval(() => void this.rebalance().catch(() => {}), 5000);
        this.refreshTimer.unref();
      }
    } else {
      const c = this.conn('main', this.target.nodes[0]);
      await connectWithin(c.redis, timeoutMs);
    }
  }

  get up(): boolean {
    for (const c of this.conns.values()) if (c.redis.status !== 'ready') return false;
    return true;
  }

  private async refreshSlots(): Promise<void> {
    const ranges = (await (this.cmd as Cluster).cluster('SLOTS')) as unknown as [number, number, [string, number, ...unknown[]], ...unknown[]][];
    const slots: string[] = new Array(16384);
    for (const [from, to, master] of ranges) {
      const key = `${master[0]}:${master[1]}`;
      for (let s = from; s <= to; s++) slots[s] = key;
    }
    this.slots = slots;
  }

  private keyFor(channel: string): string {
    if (!this.target.cluster) return 'main';
    const key = this.slots[slotOf(channel)];
    if (!key) throw new Error(`no cluster node serves the slot of ${channel}`);
    return key;
  }

  private conn(key: string, node?: { host: string; port: number }): SubConn {
    let c = this.conns.get(key);
    if (c) return c;
    if (!node && key !== 'main') {
      const i = key.lastIndexOf(':');
      node = { host: key.slice(0, i), port: Number(key.slice(i + 1)) };
    }
    const at = key === 'main' ? address(this.target) : { host: node!.host, port: node!.port };
    const redis = new Redis({ ...baseOptions(this.target, this.name), ...at, lazyConnect: false });
    const sc: SubConn = { key, redis, channels: new Map(), connected: false };
    this.conns.set(key, sc);
    redis.on('error', () => {}); // reported through 'down'; ioredis reconnects by itself
    redis.on('messageBuffer', (ch: Buffer, msg: Buffer) => this.emit('message', ch.toString(), msg));
    redis.on('smessageBuffer', (ch: Buffer, msg: Buffer) => this.emit('message', ch.toString(), msg));
    redis.on('close', () => this.emit('down'));
    redis.on('ready', () => {
      sc.connected = true;
      void this.restore(sc);
    });
    return sc;
  }

  private async restore(c: SubConn): Promise<void> {
    const list = [...c.channels];
    try {
      const classic = list.filter(([, sharded]) => !sharded).map(([ch]) => ch);
      for (let i = 0; i < classic.length; i += 500) await c.redis.subscribe(...classic.slice(i, i + 500));
      // SSUBSCRIBE takes several channels only when they share a slot: one at a time, pipelined.
      await Promise.all(list.filter(([, sharded]) => sharded).map(([ch]) => c.redis.ssubscribe(ch)));
    } catch {
      return; // dropped again meanwhile: the next 'ready' restores
    }
    this.emit('up');
    // Also on a first connect: channels recorded while it was still connecting need their gap check.
    if (list.length > 0) this.emit('resubscribed', list.map(([ch]) => ch));
  }

  async subscribe(channel: string, sharded: boolean): Promise<void> {
    const c = this.conn(this.keyFor(channel));
    c.channels.set(channel, sharded);
    try {
      // A connection made just now for this channel's master (one this thread had no channel on, such
      // as a replica promoted by a failover) is still connecting, and commands are not queued: the
      // subscribe failed with "connection down" although nothing was down. Wait for it, briefly.
      if (this.target.cluster && !c.connected) await connectWithin(c.redis, FIRST_CONNECT_MS);
      if (sharded) await c.redis.ssubscribe(channel);
      else await c.redis.subscribe(channel);
    } catch (err) {
      if (this.target.cluster && /MOVED/.test(String((err as Error).message))) {
        // The slot moved since we last looked: look again and retry once.
        c.channels.delete(channel);
        await this.refreshSlots();
        const d = this.conn(this.keyFor(channel));
        d.channels.set(channel, sharded);
        if (!d.connected) await connectWithin(d.redis, FIRST_CONNECT_MS);
        if (sharded) await d.redis.ssubscribe(channel);
        else await d.redis.subscribe(channel);
        return;
      }
      c.channels.delete(channel);
      throw err;
    }
  }

  unsubscribe(channel: string): void {
    for (const c of this.conns.values()) {
      const sharded = c.channels.get(channel);
      if (sharded === undefined) continue;
      c.channels.delete(channel);
      if (c.redis.status === 'ready') (sharded ? c.redis.sunsubscribe(channel) : c.redis.unsubscribe(channel)).catch(() => {});
    }
  }

  /** Cluster: moves channels whose slot now lives on another master. */
  private async rebalance(): Promise<void> {
    if (this.closed) return;
    await this.refreshSlots();
    const moved: string[] = [];
    for (const c of [...this.conns.values()]) {
      for (const [ch, sharded] of [...c.channels]) {
        const key = this.keyFor(ch);
        if (key === c.key) continue;
        c.channels.delete(ch);
        if (c.redis.status === 'ready') (sharded ? c.redis.sunsubscribe(ch) : c.redis.unsubscribe(ch)).catch(() => {});
        try {
          await this.subscribe(ch, sharded);
          moved.push(ch);
        } catch {
          /* the new master is not reachable yet: tried again at the next rebalance */
          this.conn(key).channels.set(ch, sharded);
        }
      }
    }
    // A node that no longer serves any slot (a dead master whose replica took over, or one emptied by
    // resharding) is dropped: kept, its connection would retry forever, and `up` — /health,
    // rt_redis_up, reviving placed actors — would stay false for as long as the node stays away.
    const masters = new Set(this.slots);
    for (const c of [...this.conns.values()]) {
      if (masters.has(c.key) || c.channels.size > 0) continue;
      this.conns.delete(c.key);
      c.redis.disconnect();
    }
    if (moved.length) this.emit('resubscribed', moved);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.refreshTimer);
    for (const c of this.conns.values()) c.redis.disconnect();
    this.conns.clear();
  }
}
