// Real Redis and real rt-actors server processes for the bridge tests (test/redis*.test.ts).
// Every process started here is killed in teardown — and, should the test runner itself die, by the
// exit hook below — so no redis-server or host outlives its test.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { API_KEY, JWT_SECRET } from './server.js';

type T = { teardown(fn: () => unknown): void };

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it returns a truthy value; fails with `what` after `ms`. */
export async function until<V>(what: string, check: () => V | Promise<V>, ms = 15000, everyMs = 50): Promise<NonNullable<Awaited<V>>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<Awaited<V>>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

async function ping(port: number): Promise<boolean> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, connectTimeout: 500, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  r.on('error', () => {});
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/** A client for assertions and for playing the backend (PUBLISH like Laravel does). */
export function redisClient(t: T, port: number): Redis {
  const r = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  r.on('error', () => {});
  t.teardown(() => r.disconnect());
  return r;
}

export interface RedisProc {
  port: number;
  url: string;
  dir: string;
  /** SIGKILL, like a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
}

/**
 * Starts a redis-server of our own on a free port. `persist` turns on the append-only file (fsync on
 * every write), so data survives a kill -9 and restart.
 */
export async function startRedis(t: T, opts: { persist?: boolean; args?: string[] } = {}): Promise<RedisProc> {
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    throw new Error("redis-server is not on PATH: install Redis 7 (e.g. 'apt-get install redis-server') to run the Redis bridge tests");
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'rt-redis-'));
  let proc: ChildProcess | undefined;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--daemonize', 'no', '--logfile', ''];
  if (opts.persist) args.push('--appendonly', 'yes', '--appendfsync', 'always');
  else args.push('--appendonly', 'no');
  args.push(...(opts.args ?? []));
  const rp: RedisProc = {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    async start() {
      proc = track(spawn('redis-server', args, { stdio: 'ignore' }));
      await until(`redis-server on ${port}`, () => ping(port), 10000);
    },
    async kill() {
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc!.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    },
  };
  t.teardown(async () => {
    await rp.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  await rp.start();
  return rp;
}

/**
 * The machine's Redis on 6379 when it answers (NOTES.md), else one of our own. Tests on the shared
 * Redis use a namespace of their own and delete its keys afterwards.
 */
export async function machineRedis(t: T): Promise<{ port: number; url: string }> {
  if (await ping(6379)) return { port: 6379, url: 'redis://127.0.0.1:6379' };
  const own = await startRedis(t);
  return { port: own.port, url: own.url };
}

/** Deletes every key of a namespace (on the shared Redis). */
export async function dropNamespace(port: number, ns: string): Promise<void> {
  const r = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${ns}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await r.del(...keys);
    } while (cursor !== '0');
  } catch {
    /* best effort */
  } finally {
    r.disconnect();
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A port for a Redis Cluster node, which also binds port + 10000 (its cluster bus). A port the OS hands
 * out (freePort) is in the ephemeral range, and so is its bus port, which a client connection's local
 * port could take before the node binds it (the node then exits: seen in CI). Both are taken below it.
 */
async function freeClusterPort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 2700);
    if ((await canListen(port)) && (await canListen(port + 10000))) return port;
  }
  throw new Error('no free port pair (port and port + 10000, from 20000) for a Redis Cluster node');
}

/**
 * A 3-master Redis Cluster of our own, ready when this resolves. With `replicas: 1`, each master has a
 * replica (six nodes; `ports` lists the masters, `kill(port)` is kill -9 of any node, e.g. a master
 * whose replica then takes over).
 */
export async function startRedisCluster(t: T, opts: { replicas?: number } = {}): Promise<{ ports: number[]; seeds: string; kill(port: number): Promise<void> }> {
  const nodes: RedisProc[] = [];
  const procs = new Map<number, ChildProcess>();
  const replicas = opts.replicas ?? 0;
  for (let i = 0; i < 3 * (1 + replicas); i++) {
    const port = await freeClusterPort();
    const dir = mkdtempSync(join(tmpdir(), 'rt-cluster-'));
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-node-timeout', '2000', '--daemonize', 'no', '--logfile', ''];
    const proc = track(spawn('redis-server', args, { stdio: 'ignore' }));
    procs.set(port, proc);
    t.teardown(async () => {
      await killNode(proc);
      rmSync(dir, { recursive: true, force: true });
    });
    await until(`cluster node on ${port}`, () => ping(port), 10000);
    nodes.push({ port, url: `redis://127.0.0.1:${port}`, dir, kill: async () => {}, start: async () => {} });
  }
  const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8', timeout: 30000 });
  if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
  for (const n of nodes) {
    await until(`cluster_state:ok on ${n.port}`, async () => {
      const r = new Redis({ port: n.port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      r.on('error', () => {});
      try {
        await r.connect();
        const replicating = nodes.indexOf(n) < 3 || /master_link_status:up/.test(await r.info('replication'));
        return replicating && /cluster_state:ok/.test(String(await r.cluster('INFO')));
      } finally {
        r.disconnect();
      }
    });
  }
  // redis-cli makes the first three nodes the masters (all on one address, it keeps their order).
  const masters = nodes.slice(0, 3);
  return {
    ports: masters.map((n) => n.port),
    seeds: masters.map((n) => `redis://127.0.0.1:${n.port}`).join(','),
    kill: (port) => killNode(procs.get(port)!),
  };
}

async function killNode(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
}

export interface Host {
  port: number;
  url: string;
  http: string;
  proc: ChildProcess;
  output(): string;
  /** kill -9: the host dies without a word to anyone. */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

const bin = fileURLToPath(new URL('../../bin/rt-actors.js', import.meta.url));

/** An rt-actors server in a process of its own, started through the CLI like a user would. */
export async function startHost(t: T, redis: string, ns: string, opts: { workers?: number; args?: string[] } = {}): Promise<Host> {
  const args = [bin, 'start', '--redis', redis, '--redis-namespace', ns, '--port', '0', '--host', '127.0.0.1', '--workers', String(opts.workers ?? 1),
    '--api-key', API_KEY, '--jwt-secret', JWT_SECRET, '--log-level', 'warn', '--presence-ttl', '2s', '--shutdown-timeout', '2', ...(opts.args ?? [])];
  const proc = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RT_API_KEY: '', RT_REDIS_URL: '' } }));
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stop);
  const deadline = Date.now() + 60000;  // The machine may be loaded (shared by other builds): starting is slow, not broken.
  let port = 0;
  while (!port) {
    if (proc.exitCode !== null) throw new Error(`host exited (${proc.exitCode}): ${out}`);
    if (Date.now() > deadline) throw new Error(`host did not start: ${out}`);
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
    if (m) port = Number(m[1]);
    else await sleep(50);
  }
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    http: `http://127.0.0.1:${port}`,
    proc,
    output: () => out,
    crash: async () => {
      const redisPort = Number(new URL(redis.split(',')[0]!).port || 6379);
      const conns = tcpPeersOf(proc.pid!, redisPort);
      proc.kill('SIGKILL');
      await exited;
      // The kernel closes a dead process's sockets at once, but Redis notices on its own time (tens of
      // ms on a loaded machine): until then PUBLISH still counts the dead host's subscriptions, and an
      // event forwarded to it meanwhile waits out its timeout (docs/scaling.md). The tests' "after a
      // kill -9" starts once Redis has let go of them, as it has moments later in any deployment.
      const r = new Redis({ port: redisPort, host: '127.0.0.1', lazyConnect: true });
      await r.connect();
      try {
        const deadline = Date.now() + 15_000;
        for (;;) {
          const list = String(await r.client('LIST'));
          if (![...conns].some((local) => list.includes(`addr=127.0.0.1:${local} `))) break;
          if (Date.now() > deadline) throw new Error('Redis still holds connections of the killed host after 15 s');
          await sleep(10);
        }
      } finally {
        r.disconnect();
      }
    },
    stop,
  };
}

/** A Prometheus counter summed over threads, from a host's /metrics; `label` (e.g. 'reason="auth"') keeps the series that carry it. */
/**
 * Two hosts running the actors of `actors` (a folder) on a fresh namespace of the machine's Redis, with a
 * 2 s lease so that the second takes over a placed actor soon after the first crashes.
 */
export async function placedHostPair(t: T, actors: string): Promise<[Host, Host]> {
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const args = (id: string) => ['--actors', actors, '--lease-ttl', '2s', '--host-id', id];
  return Promise.all([startHost(t, redis.url, ns, { args: args('h1') }), startHost(t, redis.url, ns, { args: args('h2') })]);
}

export async function metric(host: Host, name: string, label = ''): Promise<number> {
  const text = await fetch(host.http + '/metrics').then((r) => r.text());
  let n = 0;
  // Per-thread series carry labels ({thread=…}); host totals have none.
  for (const line of text.split('\n')) {
    if ((line.startsWith(name + '{') || line.startsWith(name + ' ')) && line.includes(label)) n += Number(line.split(' ').pop());
  }
  return n;
}

export interface SentinelGroup {
  name: string;
  master: RedisProc;
  replica: RedisProc;
  /** Sentinel ports. */
  sentinels: number[];
  /** `--redis-sentinels` value. */
  spec: string;
  /** The port of the master the sentinels currently name. */
  masterPort(): Promise<number>;
}

/**
 * A master, one replica and three Redis Sentinels (`redis-server <conf> --sentinel`, the same binary as
 * `redis-sentinel`) on free ports, quorum 2. Ready when the sentinels see the master and its replica.
 */
export async function startSentinelGroup(t: T, name = 'rtmaster'): Promise<SentinelGroup> {
  const master = await startRedis(t);
  const replica = await startRedis(t, { args: ['--replicaof', '127.0.0.1', String(master.port)] });
  const sentinels: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'rt-sentinel-'));
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
      `sentinel down-after-milliseconds ${name} 1000`, `sentinel failover-timeout ${name} 5000`, `sentinel parallel-syncs ${name} 1`, ''].join('\n'));
    const proc = track(spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' }));
    t.teardown(async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    });
    await until(`redis-sentinel on ${port}`, () => ping(port), 10000);
    sentinels.push(port);
  }
  const ask = redisCall;
  const group: SentinelGroup = {
    name,
    master,
    replica,
    sentinels,
    spec: sentinels.map((p) => `127.0.0.1:${p}`).join(','),
    masterPort: async () => Number(((await ask(sentinels[0]!, 'SENTINEL', 'get-master-addr-by-name', name)) as string[])[1]),
  };
  // Every sentinel must know the replica (and the others) before a failover can be asked for.
  for (const p of sentinels) {
    await until(`sentinel ${p} to see the replica and its peers`, async () => {
      const replicas = (await ask(p, 'SENTINEL', 'replicas', name)) as string[][];
      const peers = (await ask(p, 'SENTINEL', 'sentinels', name)) as string[][];
      return replicas.length === 1 && peers.length === 2;
    }, 20000);
  }
  return group;
}

/** Runs one command on a Redis or sentinel port and returns the reply. */
export async function redisCall(port: number, ...args: string[]): Promise<unknown> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  r.on('error', () => {});
  try {
    await r.connect();
    return await r.call(...(args as [string, ...string[]]));
  } finally {
    r.disconnect();
  }
}

/** The local ports of `pid`'s TCP connections to 127.0.0.1:`remotePort` (Linux: /proc). */
function tcpPeersOf(pid: number, remotePort: number): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const line of readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [, local, remote] = f;
    if (parseInt(remote!.split(':')[1]!, 16) === remotePort && inodes.has(f[9]!)) ports.add(parseInt(local!.split(':')[1]!, 16));
  }
  return ports;
}
