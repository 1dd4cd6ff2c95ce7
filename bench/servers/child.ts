/**
 * A benchmark server in its own process, so its CPU time and memory are its own. Started by
 * bench/lib.ts with `--kind rt|uws|uws-threads|socketio`; driven over IPC: publish at a rate, report CPU and RSS.
 */
import { performance } from 'node:perf_hooks';
import uWS from 'uWebSockets.js';
import { createServer as createHttpServer } from 'node:http';
import { frameOf, uwsRoutes } from './uws-routes.js';
import { startThreadedUws } from './uws-threads.js';
import { threadTimes } from './thread-times.js';
import { placeServerProcess } from './placement.js';

type Kind = 'rt' | 'uws' | 'uws-threads' | 'socketio';
const kind = (process.argv[2] ?? 'rt') as Kind;
const workers = Number(process.argv[3] ?? 2);
/** rt-actors options for this run (JSON), over the benchmark defaults below. */
const overrides = JSON.parse(process.argv[4] ?? '{}') as Record<string, unknown>;

interface PublishCmd { type: 'publish'; channel: string; rate: number; count: number; size: number }
type Cmd = PublishCmd | { type: 'cpu' } | { type: 'mem' } | { type: 'rss' } | { type: 'stop' };

let publishFn: (channel: string, body: string) => void = () => {};
let collectGarbage: (() => Promise<number>) | undefined;
let stop: () => Promise<void> = async () => {};
let port = 0;

function payload(size: number, seq: number): string {
  // t: send time in epoch ms with sub-ms precision, comparable across processes on one machine.
  const head = JSON.stringify({ seq, t: performance.timeOrigin + performance.now(), p: '' });
  return head.slice(0, -2) + '"'.padStart(Math.max(1, size - head.length + 2), 'x').slice(0, -1) + '"}';
}

async function start(): Promise<void> {
  if (kind === 'rt') {
    const { createServer } = await import('rt-actors');
    const s = await createServer({ port: 0, host: '127.0.0.1', workers, apiKey: 'bench', env: {}, logLevel: 'error', maxBackpressure: 64 * 1024 * 1024, historySize: 0, maxConnectionsPerIp: 0, connectionRatePerIp: 0, maxConnections: 0, apiRateLimit: 0, ...overrides });
    port = s.port;
    publishFn = (ch, body) => {
      s.publish(ch, 'm', JSON.parse(body)).catch((err) => console.error('publish failed:', err.message));
    };
    stop = () => s.close();
    collectGarbage = () => s.collectGarbage();
  } else if (kind === 'uws') {
    const app = uWS.App();
    uwsRoutes(app, (channel, frame) => app.publish(channel, frame));
    await new Promise<void>((r) => app.listen('127.0.0.1', 0, (s) => ((port = uWS.us_socket_local_port(s as never)), r())));
    publishFn = (ch, body) => app.publish(ch, frameOf(ch, 'm', body));
    stop = async () => {
      app.close();
    };
  } else if (kind === 'uws-threads') {
    const s = await startThreadedUws(workers);
    port = s.port;
    publishFn = (ch, body) => s.publish(ch, frameOf(ch, 'm', body));
    stop = () => s.stop();
  } else {
    const { Server } = await import('socket.io');
    const http = createHttpServer();
    const io = new Server(http, { transports: ['websocket'] });
    io.on('connection', (socket) => {
      socket.on('subscribe', (p: { channel: string }, ack?: (r: unknown) => void) => {
        socket.join(p.channel);
        ack?.({ ok: true });
      });
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    port = (http.address() as { port: number }).port;
    publishFn = (ch, body) => io.to(ch).emit('m', ch, JSON.parse(body));
    stop = async () => {
      io.close();
    };
  }
}

const publishing = new Set<NodeJS.Timeout>();

function publishAtRate(c: PublishCmd): void {
  let sent = 0;
  let timer: NodeJS.Timeout;
  const startAt = performance.now();
  // Bursts on a 10 ms tick: the rate holds, and every server gets the same chance to batch writes.
  timer = setInterval(() => {
    const due = Math.min(c.count, Math.floor(((performance.now() - startAt) / 1000) * c.rate));
    while (sent < due) publishFn(c.channel, payload(c.size, sent++));
    if (sent >= c.count) {
      clearInterval(timer);
      publishing.delete(timer);
      process.send!({ type: 'published', count: sent, channel: c.channel });
    }
  }, 10);
  publishing.add(timer);
}


process.on('message', async (c: Cmd) => {
  if (c.type === 'publish') publishAtRate(c);
  else if (c.type === 'cpu') {
    const u = process.cpuUsage();
    process.send!({ type: 'cpu', user: u.user, system: u.system, threads: threadTimes() });
  } else if (c.type === 'rss') {
    process.send!({ type: 'rss', rss: process.memoryUsage().rss });
  } else if (c.type === 'mem') {
    (globalThis as { gc?: () => void }).gc?.();
    // rt-actors shards are worker threads with heaps of their own: collect those too.
    const heap = collectGarbage ? await collectGarbage() : process.memoryUsage().heapUsed;
    await new Promise((r) => setTimeout(r, 200));
    process.send!({ type: 'mem', rss: process.memoryUsage().rss, heap });
  } else if (c.type === 'stop') {
    for (const t of publishing) clearInterval(t);
    await stop();
    process.exit(0);
  }
});

placeServerProcess();
await start();
process.send!({ type: 'ready', port });
