/**
 * Socket.IO fan-out: 1000 socket.io-client WebSocket subscribers on one channel, the same clients and
 * load against the rt-actors gateway, socket.io 4 (default engine) and socket.io attached to
 * uWebSockets.js (`io.attachApp`). Each server runs in its own child process (bench/servers/sio.ts)
 * and publishes from inside itself at a fixed rate, or a backend process (bench/publisher.ts) publishes
 * over each server's HTTP publish endpoint as fast as 32 concurrent requests allow; the clients run here. Reported per server:
 * deliveries/s the clients saw, server CPU per delivery (process.cpuUsage of the server process, all
 * threads) and deliveries per server CPU-second, latency percentiles, and the ratios to socket.io.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { io as ioClient, type Socket } from 'socket.io-client';
import { rawClient, subscribeRaw, type RawProtocol } from './raw-ws.js';
import { interleave, now, percentile, repeatRounds, round, summariseRounds, threadDelta, until, warmChannels, warmInHalves, warmPublications, type CpuSplit } from './lib.js';
import { runPublisher, type Via } from './publisher.js';

type Kind = 'rt' | 'rt-no-recovery' | 'socketio' | 'socketio-uws' | 'socketio-uws-recovery';

interface Target {
  /** Row label. */
  name: string;
  kind: Kind;
  /** rt-actors shards (worker threads). */
  workers: number;
}

interface Load {
  name: string;
  rate: number;
  seconds: number;
  size: number;
  /** Publishes are made in bursts every tickMs: 10 ms is a steady stream, 100 ms ten-message bursts at 100/s. */
  tickMs: number;
  /**
   * Published by a backend process over HTTP as fast as 32 concurrent requests allow (issue 15's
   * method), `rate × seconds` of them, instead of from inside the server at `rate`.
   */
  backend?: boolean;
}

class SioBenchServer {
  private waiters = new Map<string, (m: any) => void>();
  constructor(readonly child: ChildProcess, readonly port: number) {
    child.on('message', (m: any) => {
      const w = this.waiters.get(m.type);
      if (w) {
        this.waiters.delete(m.type);
        w(m);
      }
    });
  }

  static async start(kind: Kind, workers: number): Promise<SioBenchServer> {
    // BENCH_NODE_ARGS: extra flags for the server process (e.g. --perf-basic-prof), as in bench/lib.ts.
    const execArgv = [...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.BENCH_PROF] : []), ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [])];
    const child = fork(new URL('./servers/sio.js', import.meta.url), [kind, String(workers)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: any) => (m.type === 'ready' ? resolve(m.port) : reject(new Error('bad start'))));
      child.once('exit', (code) => reject(new Error(`bench server ${kind} exited with ${code}`)));
    });
    return new SioBenchServer(child, port);
  }

  ask<T = any>(cmd: object, reply: string): Promise<T> {
    return new Promise((resolve) => {
      this.waiters.set(reply, resolve);
      this.child.send(cmd);
    });
  }

  /** CPU time of the server process, all threads and per thread: user and kernel, in µs. */
  cpu(): Promise<CpuSplit> {
    return this.ask<CpuSplit>({ type: 'cpu' }, 'cpu');
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ type: 'stop' });
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    this.child.kill('SIGKILL');
  }
}

/**
 * Engine.IO 4 / Socket.IO 5 over the raw client: open (`0{…}`), connect to the main namespace (`40`),
 * subscribe with an ack (`420[…]`, answered `430[…]`), answer pings (`2` → `3`); deliveries are
 * `42["m",…]` frames.
 */
const socketIoRaw = (channel: string): RawProtocol => ({
  path: '/socket.io/?EIO=4&transport=websocket',
  delivery: Buffer.from('42["m"'),
  sentAt: (text) => JSON.parse(text.slice(2))[2].t,
  control: (text, sock, subscribed) => {
    if (text === '2') sock.send('3');
    else if (text.startsWith('0{')) sock.send('40');
    else if (text.startsWith('40')) sock.send(`420${JSON.stringify(['subscribe', { channel }])}`);
    else if (text.startsWith('430')) subscribed();
  },
});

async function subscribeAll(port: number, n: number, channel: string, onMessage: (t?: number) => void): Promise<Array<{ close(): void }>> {
  if (rawClient) return subscribeRaw(port, n, socketIoRaw(channel), onMessage);
  const socks: Socket[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, () => new Promise<void>((resolve, reject) => {
        const s = ioClient(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
        socks.push(s);
        s.on('m', (_ch: string, d: { seq: number; t: number }) => onMessage((d.seq & 7) === 0 ? d.t : undefined));
        s.once('connect', () => s.emit('subscribe', { channel }, () => resolve()));
        s.once('connect_error', reject);
      })),
    );
  }
  return socks;
}

/** Where a backend POSTs a publication to this server (bench/servers/sio.ts). */
function backendVia(kind: Kind): Via {
  const rt = kind === 'rt' || kind === 'rt-no-recovery';
  return { kind: 'http', path: rt ? '/api/publish' : '/publish', headers: rt ? { authorization: 'Bearer bench' } : {} };
}

/**
 * V8 warm-up before anything is measured, as in bench/fanout.ts (see warmJit there for the figures):
 * BENCH_WARM_PUBS publications (default 20,000) from inside the server and as many from a backend over
 * HTTP, the two ways the loads come, to 8 subscribers of side channels (one owned by each shard, see
 * warmChannels), so the per-publication functions are optimised as in a server that has been running
 * for a while. 0 skips it.
 */
async function warmJit(server: SioBenchServer, target: Target): Promise<void> {
  const pubs = warmPublications();
  if (pubs === 0) return;
  const channels = warmChannels(target.workers);
  // Both ways the loads come: from inside the server, and from a backend over HTTP.
  await warmInHalves(
    channels,
    pubs,
    (ch, n, onMessage) => subscribeAll(server.port, n, ch, onMessage),
    async (each) => {
      for (const channel of channels) await server.ask({ type: 'publish', channel, rate: 10_000, count: each, size: 64, tickMs: 10 }, 'published');
      await Promise.all(channels.map((channel) => runPublisher({ port: server.port, channel, via: backendVia(target.kind), pace: { kind: 'burst', count: each }, size: 64 })));
      return 2 * each;
    },
  );
}

async function run(target: Target, subscribers: number, loads: Load[]): Promise<Record<string, unknown>[]> {
  const server = await SioBenchServer.start(target.kind, target.workers);
  try {
    let delivered = 0;
    let lat: number[] = [];
    const socks = await subscribeAll(server.port, subscribers, 'bench', (t) => {
      delivered++;
      if (t !== undefined) lat.push(now() - t);
    });
    await new Promise((r) => setTimeout(r, 200));
    await warmJit(server, target);
    const rows: Record<string, unknown>[] = [];
    for (const load of loads) {
      const count = Math.round(load.rate * load.seconds);
      const expected = count * subscribers;
      const publishAll = (): Promise<unknown> =>
        load.backend
          ? runPublisher({ port: server.port, via: backendVia(target.kind), pace: { kind: 'burst', count }, size: load.size })
          : server.ask({ type: 'publish', channel: 'bench', rate: load.rate, count, size: load.size, tickMs: load.tickMs }, 'published');
      // The load once, not measured, as bench/fanout.ts does: the side channels' warm-up does not run
      // what a channel of 1,000 subscribers on every shard does (the other shards' deliveries), so the
      // first publications to it compiled that path inside the measured window (2026-11-27: 2-shard
      // backend rows at 10× the 1-shard user time per delivery).
      delivered = 0;
      await publishAll();
      await until(() => delivered >= expected, 15_000);
      delivered = 0;
      lat = [];
      // As in bench/fanout.ts: a mark for a profiler attached to the server (BENCH_NODE_ARGS), and with
      // BENCH_THREADS=1 where the window's CPU went, per thread (user+kernel ms), on stderr.
      if (process.env.BENCH_NODE_ARGS) console.error(`-- measuring ${target.name} ${load.name}`);
      const cpu0 = await server.cpu();
      const t0 = now();
      await publishAll();
      await until(() => delivered >= expected, 15_000);
      const elapsed = (now() - t0) / 1000;
      const cpu1 = await server.cpu();
      if (process.env.BENCH_THREADS) console.error(`-- threads ${target.name} ${load.name}: ${threadDelta(cpu0, cpu1)}`);
      const userUs = cpu1.user - cpu0.user;
      const sysUs = cpu1.system - cpu0.system;
      const cpuUs = userUs + sysUs;
      lat.sort((a, b) => a - b);
      rows.push({
        bench: 'socketio',
        load: load.name,
        server: target.name,
        subscribers,
        publish_rate: load.backend ? Math.round(count / ((now() - t0) / 1000)) : load.rate,
        publish_tick_ms: load.backend ? 'backend over HTTP, 32 concurrent' : load.tickMs,
        payload_bytes: load.size,
        delivered,
        expected,
        deliveries_per_s: Math.round(delivered / elapsed),
        server_cpu_us_per_delivery: round(cpuUs / delivered, 3),
        // Kernel time is mostly the socket writes (one per message per socket unless a server batches
        // the messages of one loop iteration); user time is the server's own work.
        server_user_us_per_delivery: round(userUs / delivered, 3),
        server_kernel_us_per_delivery: round(sysUs / delivered, 3),
        deliveries_per_cpu_s: Math.round(delivered / (cpuUs / 1e6)),
        latency_ms_p50: round(percentile(lat, 50), 2),
        latency_ms_p99: round(percentile(lat, 99), 2),
      });
    }
    socks.forEach((s) => s.close());
    return rows;
  } finally {
    await server.stop();
  }
}

/**
 * BENCH_REPEAT=n: n interleaved rounds of the chosen targets and loads; per load, each target's row with
 * the median CPU per delivery, and a summary row with every target's CPU per delivery ÷ the gateway's
 * (rt, 1 shard) in the same round — above 1, the gateway is the cheaper.
 */
async function rounds(targets: Target[], loads: Load[]): Promise<Record<string, unknown>[]> {
  const byTarget = await interleave(repeatRounds(), targets.map((t) => ({ name: t.name, run: () => run(t, 1000, loads) })));
  return loads.flatMap(({ name: load }) =>
    summariseRounds(new Map([...byTarget].map(([name, rounds]) => [name, rounds.map((rows) => rows.find((row) => row.load === load)!)])), 'server_cpu_us_per_delivery', 'rt', { bench: 'socketio', load, summary: 'server CPU per delivery ÷ the gateway\'s (rt, 1 shard) in the same round; above 1 = the gateway is cheaper' }),
  );
}

export async function benchSocketIo(opts: { quick: boolean }): Promise<Record<string, unknown>[]> {
  // Offered loads every server sustains here (the 1000 clients in this process are the limit), so CPU
  // per delivery compares like with like. The steady stream spaces messages out, so every server
  // writes each message to each socket on its own; the bursty one lets servers that batch the writes
  // of one loop iteration do so.
  const seconds = opts.quick ? 1 : 5;
  const loads: Load[] = [
    { name: 'steady', rate: opts.quick ? 60 : 80, seconds, size: 64, tickMs: 10 },
    { name: 'bursts', rate: 100, seconds, size: 64, tickMs: 100 },
    // As fast as a backend's 32 concurrent HTTP publishes go (publisher in its own process).
    { name: 'backend', rate: 100, seconds: opts.quick ? 2 : 4, size: 64, tickMs: 0, backend: true },
  ];
  // The clients need a core of their own: on a two-core machine a two-shard server competes with them
  // for CPU, they fall behind and every server then spends more per delivery on backed-up sockets. One
  // shard compares like with like against the single-threaded socket.io servers; the two-shard row
  // (full run) shows the default configuration on this machine.
  const targets: Target[] = [
    { name: 'rt', kind: 'rt', workers: 1 },
    { name: 'rt-no-recovery', kind: 'rt-no-recovery', workers: 1 },
    ...(opts.quick ? [] : [{ name: 'rt-2-shards', kind: 'rt' as Kind, workers: 2 }]),
    { name: 'socketio', kind: 'socketio', workers: 1 },
    { name: 'socketio-uws', kind: 'socketio-uws', workers: 1 },
    // The like-for-like pair of the gateway with recovery on (its default): socket.io on uWS with it on.
    { name: 'socketio-uws-recovery', kind: 'socketio-uws-recovery', workers: 1 },
  ];
  const rows: Record<string, unknown>[] = [];
  const only = process.env.BENCH_SIO_TARGETS?.split(','); // e.g. rt,socketio-uws
  const onlyLoads = process.env.BENCH_SIO_LOADS?.split(','); // e.g. backend
  const measured = loads.filter((l) => !onlyLoads || onlyLoads.includes(l.name));
  const chosen = targets.filter((t) => !only || only.includes(t.name));
  if (repeatRounds() > 1) return rounds(chosen, measured);
  for (const target of chosen) rows.push(...(await run(target, 1000, measured)));
  if (only || onlyLoads) return rows;
  for (const load of loads) {
    const row = (name: string) => rows.find((r) => r.server === name && r.load === load.name)!;
    const perCpu = (name: string) => row(name).deliveries_per_cpu_s as number;
    const user = (name: string) => row(name).server_user_us_per_delivery as number;
    rows.push({
      bench: 'socketio',
      load: load.name,
      summary: 'deliveries per server CPU-second: rt-actors gateway (1 shard) / socket.io',
      vs_socketio_default: round(perCpu('rt') / perCpu('socketio'), 1),
      vs_socketio_uws: round(perCpu('rt') / perCpu('socketio-uws'), 2),
      // Like for like: both with connection state recovery, and both without.
      vs_socketio_uws_both_recovery: round(perCpu('rt') / perCpu('socketio-uws-recovery'), 2),
      vs_socketio_uws_neither_recovery: round(perCpu('rt-no-recovery') / perCpu('socketio-uws'), 2),
      user_cpu_vs_socketio_default: round(user('socketio') / user('rt'), 1),
      user_cpu_vs_socketio_uws: round(user('socketio-uws') / user('rt'), 2),
      target_vs_default: 15,
    });
    // Connection state recovery (on by default) adds an offset to every delivery: its price.
    rows.push({
      bench: 'socketio',
      load: load.name,
      summary: 'connection state recovery: server CPU per delivery, rt (recovery on) vs rt-no-recovery',
      recovery_cpu_overhead_pct: round(((row('rt').server_cpu_us_per_delivery as number) / (row('rt-no-recovery').server_cpu_us_per_delivery as number) - 1) * 100, 1),
      recovery_user_cpu_overhead_pct: round((user('rt') / user('rt-no-recovery') - 1) * 100, 1),
      target_pct: 5,
    });
  }
  return rows;
}

// `node dist/bench/socketio.js [--quick]` runs this suite alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const row of await benchSocketIo({ quick: process.argv.includes('--quick') })) console.log(JSON.stringify(row));
  process.exit(0);
}
