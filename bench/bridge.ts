/**
 * Cross-host fan-out through the Redis bridge, next to the single-host figure. Real server processes
 * (the CLI), real WebSocket subscribers in this process, one Redis.
 *
 *   single-host          one process, no Redis (the embedded default)
 *   single-host+redis    one process with --redis (every publish goes through Redis and back)
 *   2-hosts+redis        two processes on one Redis, subscribers split between them, publishing on one
 *
 * For each: deliveries/s when publishing as fast as the API takes batches, and latency percentiles
 * (publish call → subscriber receives) at a paced rate well below saturation.
 *
 * Placed custom actors (docs/scaling.md, placement), three hosts on one Redis, the auction actor of
 * test/fixtures/cluster-actors:
 *   placed-same-host     a client on the owner's host bids; latency to a subscriber on that host
 *   placed-cross-host    a client on another host bids (forwarded to the owner and back)
 *   placed-failover      kill -9 of the owner → first accepted bid on a survivor, over N kills
 *
 *   node dist/bench/bridge.js [--quick]      prints one JSON line per figure
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { percentile } from './lib.js';

const BIN = fileURLToPath(new URL('../../bin/rt-actors.js', import.meta.url));
const KEY = 'bench-key';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function redisAnswers(port: number): Promise<boolean> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500 });
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

/** The machine's Redis if it answers, else a redis-server of our own for the run. */
async function useRedis(): Promise<{ port: number; stop(): Promise<void> }> {
  if (await redisAnswers(6379)) return { port: 6379, stop: async () => {} };
  if (spawnSync('redis-server', ['--version']).status !== 0) throw new Error('no Redis on 6379 and no redis-server on PATH');
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !(await redisAnswers(port)); i++) await sleep(50);
  return {
    port,
    stop: async () => {
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

interface Host {
  port: number;
  proc: ChildProcess;
}

async function startHost(args: string[]): Promise<Host> {
  const proc = spawn(process.execPath, [BIN, 'start', '--port', '0', '--host', '127.0.0.1', '--workers', '1', '--api-key', KEY, '--log-level', 'error', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RT_REDIS_URL: '', RT_API_KEY: '' },
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  for (let i = 0; i < 1200; i++) {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
    if (m) return { port: Number(m[1]), proc };
    if (proc.exitCode !== null) break;
    await sleep(50);
  }
  proc.kill('SIGKILL');
  throw new Error(`host did not start: ${out}`);
}

async function stopHost(h: Host): Promise<void> {
  if (h.proc.exitCode !== null) return;
  const exited = new Promise((r) => h.proc.once('exit', r));
  h.proc.kill('SIGTERM');
  const t = setTimeout(() => h.proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

interface Sub {
  ws: WebSocket;
  received: number;
  latencies: number[];
}

async function subscriber(port: number, channel: string, sink: { record: boolean }): Promise<Sub> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  const s: Sub = { ws, received: 0, latencies: [] };
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString());
      if (f.op === 'welcome') ws.send(JSON.stringify({ op: 'subscribe', channel, ref: 1 }));
      else if (f.op === 'reply' && f.ref === 1) resolve();
      else if (f.op === 'message') {
        s.received++;
        if (sink.record) s.latencies.push(performance.now() - f.data.t);
      }
    });
  });
  return s;
}

async function publishBatch(port: number, channel: string, n: number, start: number): Promise<void> {
  const t = performance.now();
  const messages = Array.from({ length: n }, (_, i) => ({ channel, event: 'b', data: { t, i: start + i } }));
  const r = await fetch(`http://127.0.0.1:${port}/api/batch`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body: JSON.stringify({ messages }) });
  if (r.status !== 200) throw new Error(`batch refused: ${r.status} ${await r.text()}`);
}

async function waitFor(subs: Sub[], total: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (subs.reduce((n, s) => n + s.received, 0) < total) {
    if (Date.now() > deadline) return false;
    await sleep(2);
  }
  return true;
}

/** A percentile of unsorted samples (lib's percentile reads sorted ones). */
const percentileOf = (xs: number[], p: number): number => percentile([...xs].sort((a, b) => a - b), p);

interface Plan {
  subscribers: number;
  saturate: number;
  batch: number;
  inflight: number;
  pacedRate: number;
  pacedSeconds: number;
}

async function measure(mode: string, hosts: Host[], publishOn: Host, plan: Plan): Promise<Record<string, unknown>> {
  const channel = `bench-${randomBytes(3).toString('hex')}`;
  const sink = { record: false };
  const subs: Sub[] = [];
  for (let i = 0; i < plan.subscribers; i++) subs.push(await subscriber(hosts[i % hosts.length]!.port, channel, sink));
  try {
    // Warm-up (JIT, Redis script cache, connections).
    await publishBatch(publishOn.port, channel, plan.batch, 0);
    await waitFor(subs, plan.batch * subs.length, 10000);
    for (const s of subs) s.received = 0;

    // Saturation: as fast as the API takes batches, a few in flight.
    const t0 = performance.now();
    let sent = 0;
    const lanes = Array.from({ length: plan.inflight }, async () => {
      while (sent < plan.saturate) {
        const n = Math.min(plan.batch, plan.saturate - sent);
        const start = sent;
        sent += n;
        await publishBatch(publishOn.port, channel, n, start);
      }
    });
    await Promise.all(lanes);
    const complete = await waitFor(subs, plan.saturate * subs.length, 30000);
    const elapsed = (performance.now() - t0) / 1000;
    const delivered = subs.reduce((n, s) => n + s.received, 0);

    // Paced: a steady rate below saturation, for latency.
    for (const s of subs) s.received = 0;
    sink.record = true;
    const perTick = Math.max(1, Math.round(plan.pacedRate / 100));
    const ticks = plan.pacedSeconds * 100;
    const begin = performance.now();
    for (let k = 0; k < ticks; k++) {
      await publishBatch(publishOn.port, channel, perTick, k * perTick);
      const next = begin + (k + 1) * 10;
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await waitFor(subs, ticks * perTick * subs.length, 10000);
    sink.record = false;
    const lat = subs.flatMap((s) => s.latencies);
    return {
      bench: 'bridge',
      mode,
      hosts: hosts.length,
      subscribers: subs.length,
      messages: plan.saturate,
      deliveries_per_s: Math.round(delivered / elapsed),
      complete,
      paced_msgs_per_s: plan.pacedRate,
      latency_ms_p50: Math.round(percentileOf(lat, 50) * 100) / 100,
      latency_ms_p99: Math.round(percentileOf(lat, 99) * 100) / 100,
      latency_samples: lat.length,
    };
  } finally {
    for (const s of subs) s.ws.terminate();
  }
}


const ACTORS = fileURLToPath(new URL('../../test/fixtures/cluster-actors', import.meta.url));

/** A native-protocol client with request/reply, for bidding. */
class Bidder {
  private ref = 0;
  private readonly waiting = new Map<number, (f: any) => void>();
  onMessage: (f: any) => void = () => {};
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString());
      if (f.op === 'reply') {
        this.waiting.get(f.ref)?.(f);
        this.waiting.delete(f.ref);
      } else if (f.op === 'message') this.onMessage(f);
    });
  }
  static async open(port: number): Promise<Bidder> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.once('error', reject);
      ws.once('message', () => resolve());
    });
    return new Bidder(ws);
  }
  request(frame: Record<string, unknown>, timeoutMs = 60000): Promise<any> {
    const ref = ++this.ref;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${JSON.stringify(frame)}`)), timeoutMs);
      this.waiting.set(ref, (f) => {
        clearTimeout(timer);
        resolve(f);
      });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }
}

/** Publish→deliver latency of a placed actor's bids, sent from `from`, received on the same host. */
async function placedLatency(mode: string, from: Host, owner: Host, rate: number, seconds: number): Promise<Record<string, unknown>> {
  const channel = `auction-bench-${randomBytes(3).toString('hex')}`;
  const first = await Bidder.open(owner.port);
  // The first event for the channel places it on the host that received it.
  if (!(await first.request({ op: 'subscribe', channel })).ok) throw new Error('subscribe failed');
  const bidder = from === owner ? first : await Bidder.open(from.port);
  const watcher = await Bidder.open(from.port);
  if (from !== owner && !(await bidder.request({ op: 'subscribe', channel })).ok) throw new Error('subscribe failed');
  if (!(await watcher.request({ op: 'subscribe', channel })).ok) throw new Error('subscribe failed');
  const sentAt = new Map<number, number>();
  const lat: number[] = [];
  let got = 0;
  watcher.onMessage = (f) => {
    if (f.event !== 'bid') return;
    const t = sentAt.get(f.data.amount);
    if (t !== undefined) lat.push(performance.now() - t);
    got++;
  };
  try {
    // Warm-up.
    for (let a = 1; a <= 20; a++) await bidder.request({ op: 'publish', channel, event: 'bid', data: { amount: a } });
    lat.length = 0;
    got = 0;
    const n = rate * seconds;
    const begin = performance.now();
    const replies: Promise<any>[] = [];
    for (let k = 0; k < n; k++) {
      const amount = 100 + k;
      sentAt.set(amount, performance.now());
      replies.push(bidder.request({ op: 'publish', channel, event: 'bid', data: { amount } }));
      const wait = begin + ((k + 1) * 1000) / rate - performance.now();
      if (wait > 0) await sleep(wait);
    }
    const answers = await Promise.all(replies);
    const deadline = Date.now() + 10000;
    while (got < n && Date.now() < deadline) await sleep(5);
    return {
      bench: 'bridge',
      mode,
      hosts: 3,
      bids: n,
      accepted: answers.filter((r) => r.ok).length,
      paced_bids_per_s: rate,
      latency_ms_p50: Math.round(percentileOf(lat, 50) * 100) / 100,
      latency_ms_p99: Math.round(percentileOf(lat, 99) * 100) / 100,
      latency_samples: lat.length,
    };
  } finally {
    for (const b of new Set([first, bidder, watcher])) b.ws.terminate();
  }
}

/** kill -9 of the owner → the first accepted bid on a survivor, `kills` times. */
async function placedFailover(bridged: string[], survivor: Host, kills: number, leaseTtl: number): Promise<Record<string, unknown>> {
  const times: number[] = [];
  const b = await Bidder.open(survivor.port);
  try {
    for (let i = 0; i < kills; i++) {
      const channel = `auction-fo-${randomBytes(3).toString('hex')}`;
      const victim = await startHost([...bridged, '--actors', ACTORS, '--lease-ttl', `${leaseTtl}s`]);
      const v = await Bidder.open(victim.port);
      if (!(await v.request({ op: 'subscribe', channel })).ok) throw new Error('subscribe failed');
      if (!(await b.request({ op: 'subscribe', channel })).ok) throw new Error('subscribe failed');
      if (!(await b.request({ op: 'publish', channel, event: 'bid', data: { amount: 1 } })).ok) throw new Error('bid failed');
      v.ws.terminate();
      const exited = new Promise((r) => victim.proc.once('exit', r));
      const t0 = performance.now();
      victim.proc.kill('SIGKILL');
      await exited;
      const r = await b.request({ op: 'publish', channel, event: 'bid', data: { amount: 2 } });
      if (!r.ok) throw new Error(`bid after the kill: ${JSON.stringify(r)}`);
      times.push(performance.now() - t0);
    }
  } finally {
    b.ws.terminate();
  }
  const sorted = [...times].sort((x, y) => x - y);
  return {
    bench: 'bridge',
    mode: 'placed-failover',
    kills,
    lease_ttl_ms: leaseTtl * 1000,
    failover_ms_min: Math.round(sorted[0]!),
    failover_ms_p50: Math.round(percentileOf(times, 50)),
    failover_ms_max: Math.round(sorted[sorted.length - 1]!),
    within_2x_lease: sorted[sorted.length - 1]! <= 2 * leaseTtl * 1000,
  };
}

async function dropNamespace(port: number, ns: string): Promise<void> {
  const r = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  r.on('error', () => {});
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${ns}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await r.del(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}

export async function benchBridge(opts: { quick: boolean; placedOnly?: boolean }): Promise<Record<string, unknown>[]> {
  const plan: Plan = opts.quick
    ? { subscribers: 8, saturate: 4000, batch: 100, inflight: 8, pacedRate: 500, pacedSeconds: 1 }
    : { subscribers: 20, saturate: 20000, batch: 100, inflight: 16, pacedRate: 1000, pacedSeconds: 5 };
  const redis = await useRedis();
  const ns = `rt-bench-${randomBytes(3).toString('hex')}`;
  const bridged = ['--redis', `redis://127.0.0.1:${redis.port}`, '--redis-namespace', ns];
  const out: Record<string, unknown>[] = [];
  const started: Host[] = [];
  const plainModes = async () => {
    const solo = await startHost([]);
    started.push(solo);
    out.push(await measure('single-host', [solo], solo, plan));
    await stopHost(solo);

    const one = await startHost(bridged);
    started.push(one);
    out.push(await measure('single-host+redis', [one], one, plan));

    const two = await startHost(bridged);
    started.push(two);
    out.push(await measure('2-hosts+redis', [one, two], one, plan));
    await Promise.all([stopHost(one), stopHost(two)]);
  };
  try {
    if (!opts.placedOnly) await plainModes();

    // Placed custom actors: three hosts, the owner is h[0] (it sees each channel's first event).
    const leaseTtl = 2;
    const placed = [...bridged, '--actors', ACTORS, '--lease-ttl', `${leaseTtl}s`];
    const h: Host[] = [];
    for (let i = 0; i < 3; i++) {
      h.push(await startHost(placed));
      started.push(h[i]!);
    }
    // Below saturation: a channel's activation runs one turn at a time and each turn that publishes
    // waits for its Lua call, so one channel takes some hundreds of bids/s on an idle machine.
    const rate = opts.quick ? 20 : 50;
    const seconds = opts.quick ? 3 : 6;
    out.push(await placedLatency('placed-same-host', h[0]!, h[0]!, rate, seconds));
    out.push(await placedLatency('placed-cross-host', h[1]!, h[0]!, rate, seconds));
    out.push(await placedFailover(bridged, h[2]!, opts.quick ? 3 : 10, leaseTtl));
  } finally {
    await Promise.all(started.map(stopHost));
    await dropNamespace(redis.port, ns).catch(() => {});
    await redis.stop();
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  for (const rec of await benchBridge({ quick, placedOnly: process.argv.includes('--placed') })) console.log(JSON.stringify(rec));
}
