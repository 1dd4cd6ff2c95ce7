/** Shared benchmark plumbing: server child processes, many ws clients, percentiles. */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import http from 'node:http';
import WebSocket from 'ws';
import { ownerOf } from '../src/runtime/hash.js';
import type { Via } from './publisher.js';
import { setPriority } from 'node:os';

// BENCH_LOAD_NICE=n: the load generators (this process, the clients, the backend publisher it forks)
// run at niceness n, and each server child sets itself back to 0 (bench/servers/child.ts), so a server
// is not preempted by its own load on this machine's two shared cores.
if (process.env.BENCH_LOAD_NICE) setPriority(Number(process.env.BENCH_LOAD_NICE));

export type ServerKind = 'rt' | 'uws' | 'uws-threads' | 'socketio';

/** Where a backend POSTs a publication: rt-actors' API, or the plain uWS servers' minimal route. */
export function publishPath(kind: ServerKind): string {
  return kind === 'rt' ? '/api/publish' : '/publish';
}

/** How the backend process (bench/publisher.ts) reaches a server: its publish route, with the bench API key. */
export function backendVia(kind: ServerKind): Via {
  return { kind: 'http', path: publishPath(kind), headers: { authorization: 'Bearer bench' } };
}

/** CPU time in µs, all threads, and per thread (`"<tid> <name>"`, Linux only). */
export interface CpuSplit {
  user: number;
  system: number;
  threads: Record<string, { user: number; system: number }>;
}

/** Per-thread CPU ms between two samples, busiest first, as one line ("name user+kernel"). */
export function threadDelta(a: CpuSplit, b: CpuSplit): string {
  return Object.entries(b.threads)
    .map(([k, v]) => ({ k, u: (v.user - (a.threads[k]?.user ?? 0)) / 1000, s: (v.system - (a.threads[k]?.system ?? 0)) / 1000 }))
    .filter((t) => t.u + t.s > 0)
    .sort((x, y) => y.u + y.s - (x.u + x.s))
    .map((t) => `${t.k} ${Math.round(t.u)}+${Math.round(t.s)}`)
    .join(', ');
}

export class BenchServer {
  /** Waiters per reply key, FIFO: several requests of one kind may be in flight (e.g. two publish loops). */
  private waiters = new Map<string, Array<(m: any) => void>>();
  constructor(readonly child: ChildProcess, readonly port: number) {
    child.on('message', (m: any) => {
      const key = m.type === 'published' ? `published:${m.channel}` : m.type;
      this.waiters.get(key)?.shift()?.(m);
    });
  }

  /** BENCH_RT_OPTIONS: createServer options (JSON) for the rt-actors server, e.g. '{"shardYoungGeneration":0}'. */
  static async start(kind: ServerKind, workers = 2, options: Record<string, unknown> = {}): Promise<BenchServer> {
    if (kind === 'rt' && process.env.BENCH_RT_OPTIONS) options = { ...JSON.parse(process.env.BENCH_RT_OPTIONS), ...options };
    const child = fork(new URL('./servers/child.js', import.meta.url), [kind, String(workers), JSON.stringify(options)], { execArgv: ['--expose-gc', ...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.BENCH_PROF] : []), ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: any) => (m.type === 'ready' ? resolve(m.port) : reject(new Error('bad start'))));
      child.once('exit', (code) => reject(new Error(`bench server ${kind} exited with ${code}`)));
    });
    return new BenchServer(child, port);
  }

  ask<T = any>(cmd: object, reply: string): Promise<T> {
    return new Promise((resolve) => {
      let list = this.waiters.get(reply);
      if (!list) this.waiters.set(reply, (list = []));
      list.push(resolve);
      this.child.send(cmd);
    });
  }

  cpuMicros(): Promise<number> {
    return this.cpuSplit().then((c) => c.user + c.system);
  }

  /** CPU time of the server process, all threads, in µs: user and kernel. */
  cpuSplit(): Promise<CpuSplit> {
    return this.ask<CpuSplit>({ type: 'cpu' }, 'cpu');
  }

  /** RSS as it is, without collecting garbage first. */
  rss(): Promise<number> {
    return this.ask<{ rss: number }>({ type: 'rss' }, 'rss').then((m) => m.rss);
  }

  /** RSS, and the JS heap plus external memory (main thread) after a full GC. */
  memory(): Promise<{ rss: number; heap: number }> {
    return this.ask<{ rss: number; heap: number }>({ type: 'mem' }, 'mem');
  }

  publish(channel: string, rate: number, count: number, size: number): Promise<unknown> {
    return this.ask({ type: 'publish', channel, rate, count, size }, `published:${channel}`);
  }

  /**
   * The same load from this process as a backend would send it: one HTTP POST per publication on
   * keep-alive connections (rt-actors: /api/publish; the uWS baseline: its /publish route), on the same
   * 10 ms tick as publish(). The payload's `t` is taken when the request is sent.
   */
  async publishOverHttp(kind: ServerKind, channel: string, rate: number, count: number, size: number): Promise<void> {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const path = publishPath(kind);
    const post = (seq: number): Promise<void> =>
      new Promise((resolve, reject) => {
        const head = JSON.stringify({ seq, t: now(), p: '' });
        const data = head.slice(0, -2) + 'x'.repeat(Math.max(0, size - head.length)) + '"}';
        const body = `{"channel":${JSON.stringify(channel)},"event":"m","data":${data}}`;
        const req = http.request({ host: '127.0.0.1', port: this.port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: 'Bearer bench' } }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`publish: HTTP ${res.statusCode}`))));
        });
        req.on('error', reject);
        req.end(body);
      });
    const sends: Promise<void>[] = [];
    const startAt = performance.now();
    let sent = 0;
    while (sent < count) {
      const due = Math.min(count, Math.floor(((performance.now() - startAt) / 1000) * rate));
      while (sent < due) sends.push(post(sent++));
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(sends);
    agent.destroy();
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ type: 'stop' });
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    this.child.kill('SIGKILL');
  }
}

/** Connects `n` native-protocol (or plain) ws clients, `concurrency` at a time. */
export async function connectMany(url: string, n: number, onOpen?: (ws: WebSocket, i: number) => void, concurrency = 200): Promise<WebSocket[]> {
  const out: WebSocket[] = [];
  for (let i = 0; i < n; i += concurrency) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(concurrency, n - i) }, (_, k) => new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(url, { perMessageDeflate: false });
        ws.once('open', () => {
          onOpen?.(ws, i + k);
          resolve(ws);
        });
        ws.once('error', reject);
      })),
    );
    out.push(...batch);
  }
  return out;
}

/** Polls `done` every `stepMs` until it holds or `timeoutMs` has passed (then the caller's counts show the shortfall). */
export async function until(done: () => boolean, timeoutMs: number, stepMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, stepMs));
}

/**
 * The side channels of a warm-up: one owned by each of `threads` shards. A shard runs different code
 * for a channel it owns (the actor, the encoding for every shard) than for one it forwards to (the
 * request, the delivery frame); warmed on one channel, the measured channel's owner may meet its role
 * for the first time in the measured window, and V8 compiles it there (seen with --trace-opt: decodeHot,
 * encodeHot, dispatch, readBody, the HTTP handler, compiled on the helper threads after the mark).
 */
export function warmChannels(threads: number): string[] {
  const out: string[] = [];
  for (let s = 0; s < threads; s++) {
    let k = 0;
    while (ownerOf(`warm-${k}`, threads) !== s) k++;
    out.push(`warm-${k}`);
  }
  return out;
}

/** Subscribers per side channel of a warm-up. */
const WARM_SUBSCRIBERS = 8;

/**
 * A warm-up on side channels (see warmChannels), in two halves with new subscribers for the second:
 * their unsubscribes (and subscribes) reach the hot per-publication functions (the notice dispatch,
 * the frame encoder) between the halves, so the code V8 optimises in the second half already knows
 * those message shapes. Otherwise the warm-up's clients leaving at its end deoptimise those functions,
 * and V8 recompiles them inside the measured window (2026-11-27: 10 TurboFan compilations, ~100 ms of
 * compiler time in a 2-shard backend row). `publishHalf(each)` sends a half to every channel and
 * resolves with how many publications each channel got; each half ends when all were delivered.
 */
export async function warmInHalves(
  channels: string[],
  pubs: number,
  subscribe: (channel: string, n: number, onMessage: () => void) => Promise<{ close(): void }[]>,
  publishHalf: (each: number) => Promise<number>,
): Promise<void> {
  const each = Math.ceil(pubs / channels.length / 2);
  for (let half = 0; half < 2; half++) {
    let got = 0;
    const few = (await Promise.all(channels.map((ch) => subscribe(ch, WARM_SUBSCRIBERS, () => got++)))).flat();
    const perChannel = await publishHalf(each);
    await until(() => got >= perChannel * WARM_SUBSCRIBERS * channels.length, 60_000);
    few.forEach((s) => s.close());
  }
}

/**
 * Publications to side channels (see warmChannels) before a suite measures anything: BENCH_WARM_PUBS,
 * default 20,000; 0 skips the warm-up. Why, and the figures: warmJit in bench/fanout.ts.
 */
export function warmPublications(): number {
  const n = Number(process.env.BENCH_WARM_PUBS ?? 20_000);
  return n > 0 ? n : 0;
}

export function now(): number {
  return performance.timeOrigin + performance.now();
}

/** The middle value of `xs` (the upper one of an even count), `xs` left unsorted. */
export function median(xs: number[]): number {
  return percentile([...xs].sort((a, b) => a - b), 50);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** BENCH_REPEAT=n: how many interleaved rounds the suites that support it run (default 1). */
export function repeatRounds(): number {
  return Math.max(1, Math.floor(Number(process.env.BENCH_REPEAT ?? 1)) || 1);
}

type Row = Record<string, unknown>;

/**
 * Runs every config once per round, in turn, for `rounds` rounds, and returns each config's rows in
 * round order. Interleaving puts every server into each stretch of the machine's weather: on this VM a
 * server's figure moves ±40 % between runs, and figures taken within one round move together.
 */
export async function interleave<R>(rounds: number, configs: ReadonlyArray<{ name: string; run: () => Promise<R> }>): Promise<Map<string, R[]>> {
  const rows = new Map<string, R[]>(configs.map((c) => [c.name, []]));
  for (let r = 0; r < rounds; r++) for (const c of configs) rows.get(c.name)!.push(await c.run());
  return rows;
}

/**
 * The rows of interleaved rounds, summarised: each config's round with the median `key` (plus the
 * rounds and the range), and a summary row with each config's `key` divided by `base`'s *in the same
 * round*, median and range.
 */
export function summariseRounds(rows: Map<string, Row[]>, key: string, base: string, summary: Row): Row[] {
  const value = (row: Row): number => row[key] as number;
  const out: Row[] = [];
  for (const list of rows.values()) {
    const m = median(list.map(value));
    out.push({ ...list.find((row) => value(row) === m)!, rounds: list.length, [`${key}_range`]: [Math.min(...list.map(value)), Math.max(...list.map(value))] });
  }
  const baseRows = rows.get(base);
  if (!baseRows) return out;
  const ratios: Row = {};
  for (const [name, list] of rows) {
    if (name === base) continue;
    const rs = list.map((row, i) => round(value(row) / value(baseRows[i]!), 2));
    ratios[name] = { median: median(rs), range: [Math.min(...rs), Math.max(...rs)], rounds: rs };
  }
  out.push({ ...summary, rounds: baseRows.length, ...ratios });
  return out;
}
