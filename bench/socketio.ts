/**
 * Socket.IO fan-out: 1000 socket.io-client WebSocket subscribers on one channel, the same clients and
 * load against the rt-actors gateway, socket.io 4 (default engine) and socket.io attached to
 * uWebSockets.js (`io.attachApp`). Each server runs in its own child process (bench/servers/sio.ts)
 * and publishes from inside itself at a fixed rate; the clients run here. Reported per server:
 * deliveries/s the clients saw, server CPU per delivery (process.cpuUsage of the server process, all
 * threads) and deliveries per server CPU-second, latency percentiles, and the ratios to socket.io.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { io as ioClient, type Socket } from 'socket.io-client';
import { now, percentile, round } from './lib.js';

type Kind = 'rt' | 'socketio' | 'socketio-uws';

interface Load {
  name: string;
  rate: number;
  seconds: number;
  size: number;
  /** Publishes are made in bursts every tickMs: 10 ms is a steady stream, 100 ms ten-message bursts at 100/s. */
  tickMs: number;
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

  static async start(kind: Kind): Promise<SioBenchServer> {
    const child = fork(new URL('./servers/sio.js', import.meta.url), [kind, '2'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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

  cpuMicros(): Promise<number> {
    return this.ask<{ us: number }>({ type: 'cpu' }, 'cpu').then((m) => m.us);
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ type: 'stop' });
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    this.child.kill('SIGKILL');
  }
}

async function subscribeAll(port: number, n: number, channel: string, onMessage: (d: { seq: number; t: number }) => void): Promise<Socket[]> {
  const socks: Socket[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, () => new Promise<void>((resolve, reject) => {
        const s = ioClient(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
        socks.push(s);
        s.on('m', (_ch: string, d: { seq: number; t: number }) => onMessage(d));
        s.once('connect', () => s.emit('subscribe', { channel }, () => resolve()));
        s.once('connect_error', reject);
      })),
    );
  }
  return socks;
}

async function run(kind: Kind, subscribers: number, loads: Load[]): Promise<Record<string, unknown>[]> {
  const server = await SioBenchServer.start(kind);
  try {
    let delivered = 0;
    let lat: number[] = [];
    const socks = await subscribeAll(server.port, subscribers, 'bench', (d) => {
      delivered++;
      if ((d.seq & 7) === 0) lat.push(now() - d.t);
    });
    await new Promise((r) => setTimeout(r, 200));
    const rows: Record<string, unknown>[] = [];
    for (const load of loads) {
      delivered = 0;
      lat = [];
      const count = Math.round(load.rate * load.seconds);
      const expected = count * subscribers;
      const cpu0 = await server.cpuMicros();
      const t0 = now();
      await server.ask({ type: 'publish', channel: 'bench', rate: load.rate, count, size: load.size, tickMs: load.tickMs }, 'published');
      const deadline = Date.now() + 15_000;
      while (delivered < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const elapsed = (now() - t0) / 1000;
      const cpuUs = (await server.cpuMicros()) - cpu0;
      lat.sort((a, b) => a - b);
      rows.push({
        bench: 'socketio',
        load: load.name,
        server: kind,
        subscribers,
        publish_rate: load.rate,
        publish_tick_ms: load.tickMs,
        payload_bytes: load.size,
        delivered,
        expected,
        deliveries_per_s: Math.round(delivered / elapsed),
        server_cpu_us_per_delivery: round(cpuUs / delivered, 3),
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

export async function benchSocketIo(opts: { quick: boolean }): Promise<Record<string, unknown>[]> {
  // Offered loads every server sustains here (the 1000 clients in this process are the limit), so CPU
  // per delivery compares like with like. The steady stream spaces messages out, so every server
  // writes each message to each socket on its own; the bursty one lets servers that batch the writes
  // of one loop iteration do so.
  const seconds = opts.quick ? 1.5 : 5;
  const loads: Load[] = [
    { name: 'steady', rate: opts.quick ? 60 : 80, seconds, size: 64, tickMs: 10 },
    { name: 'bursts', rate: 100, seconds, size: 64, tickMs: 100 },
  ];
  const rows: Record<string, unknown>[] = [];
  for (const kind of ['rt', 'socketio', 'socketio-uws'] as Kind[]) rows.push(...(await run(kind, 1000, loads)));
  for (const load of loads) {
    const perCpu = (k: Kind) => rows.find((r) => r.server === k && r.load === load.name)!.deliveries_per_cpu_s as number;
    rows.push({
      bench: 'socketio',
      load: load.name,
      summary: 'deliveries per server CPU-second: rt-actors gateway / socket.io',
      vs_socketio_default: round(perCpu('rt') / perCpu('socketio'), 1),
      vs_socketio_uws: round(perCpu('rt') / perCpu('socketio-uws'), 2),
      target_vs_default: 15,
    });
  }
  return rows;
}

// `node dist/bench/socketio.js [--quick]` runs this suite alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const row of await benchSocketIo({ quick: process.argv.includes('--quick') })) console.log(JSON.stringify(row));
  process.exit(0);
}
