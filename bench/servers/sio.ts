/**
 * A Socket.IO-speaking benchmark server in its own process, so its CPU time is its own: the rt-actors
 * gateway ('rt'), socket.io 4 with its default engine ('socketio'), or socket.io attached to
 * uWebSockets.js ('socketio-uws'; 'socketio-uws-recovery' with connection state recovery on, which the
 * gateway has on by default: 120 s, the same window). Clients subscribe with `emit('subscribe', { channel }, ack)` on all
 * three. Driven over IPC by bench/socketio.ts: publish at a rate, report CPU.
 */
import { performance } from 'node:perf_hooks';
import { createServer as createHttpServer } from 'node:http';
import uWS from 'uWebSockets.js';
import { threadTimes } from './thread-times.js';
import { placeServerProcess } from './placement.js';

type Kind = 'rt' | 'rt-no-recovery' | 'socketio' | 'socketio-uws' | 'socketio-uws-recovery';
const kind = (process.argv[2] ?? 'rt') as Kind;
const workers = Number(process.argv[3] ?? 2);

interface PublishCmd { type: 'publish'; channel: string; rate: number; count: number; size: number; tickMs?: number }
type Cmd = PublishCmd | { type: 'cpu' } | { type: 'stop' };

let publishFn: (channel: string, data: unknown) => void = () => {};
let stop: () => Promise<void> = async () => {};
let port = 0;

function payload(size: number, seq: number): unknown {
  // t: send time in epoch ms with sub-ms precision, comparable across processes on one machine.
  const base = { seq, t: performance.timeOrigin + performance.now(), p: '' };
  base.p = 'x'.repeat(Math.max(0, size - JSON.stringify(base).length));
  return base;
}

async function start(): Promise<void> {
  if (kind === 'rt' || kind === 'rt-no-recovery') {
    const { createServer } = await import('rt-actors');
    // rt-no-recovery: the same without connection state recovery, to price its offsets on the fan-out path.
    const recovery = kind === 'rt' ? {} : { socketioRecovery: 0 };
    const s = await createServer({ port: 0, host: '127.0.0.1', workers, apiKey: 'bench', env: {}, logLevel: 'error', maxBackpressure: 64 * 1024 * 1024, historySize: 0, maxConnectionsPerIp: 0, connectionRatePerIp: 0, maxConnections: 0, apiRateLimit: 0, socketioTransports: 'websocket', writeDelay: Number(process.env.BENCH_WRITE_DELAY ?? 0), ...recovery });
    port = s.port;
    publishFn = (ch, data) => void s.publish(ch, 'm', data).catch((err: Error) => console.error('publish failed:', err.message));
    stop = () => s.close();
    return;
  }
  const { Server } = await import('socket.io');
  const recovery = kind === 'socketio-uws-recovery' ? { connectionStateRecovery: { maxDisconnectionDuration: 120_000 } } : {};
  const io = new Server({ transports: ['websocket'], serveClient: false, ...recovery });
  io.on('connection', (socket) => {
    socket.on('subscribe', (p: { channel: string }, ack?: (r: unknown) => void) => {
      void socket.join(p.channel);
      ack?.({ ok: true });
    });
  });
  publishFn = (ch, data) => io.to(ch).emit('m', ch, data);
  // A backend's publish over HTTP (bench/publisher.ts), the socket.io way: POST { channel, event, data },
  // then io.to(channel).emit. (rt-actors' counterpart is POST /api/publish.)
  const backendPublish = (body: string): void => {
    const b = JSON.parse(body) as { channel: string; event: string; data: unknown };
    io.to(b.channel).emit(b.event, b.channel, b.data);
  };
  if (kind === 'socketio') {
    const http = createHttpServer((req, res) => {
      if (req.method !== 'POST' || req.url !== '/publish') return;
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        backendPublish(body);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      });
    });
    io.attach(http);
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    port = (http.address() as { port: number }).port;
    stop = async () => void io.close();
  } else {
    const app = uWS.App();
    io.attachApp(app);
    app.post('/publish', (res) => {
      const chunks: Buffer[] = [];
      res.onAborted(() => {});
      res.onData((chunk, last) => {
        chunks.push(Buffer.from(chunk.slice(0)));
        if (!last) return;
        backendPublish(Buffer.concat(chunks).toString('utf8'));
        res.cork(() => res.writeHeader('content-type', 'application/json').end('{"ok":true}'));
      });
    });
    await new Promise<void>((r) => app.listen('127.0.0.1', 0, (s) => ((port = uWS.us_socket_local_port(s as never)), r())));
    stop = async () => {
      io.close();
      app.close();
    };
  }
}

let publishing: NodeJS.Timeout | undefined;

function publishAtRate(c: PublishCmd): void {
  let sent = 0;
  const startAt = performance.now();
  // Bursts on a tick (10 ms unless asked otherwise): the rate holds, and every server gets the same
  // chance to batch writes.
  publishing = setInterval(() => {
    const due = Math.min(c.count, Math.floor(((performance.now() - startAt) / 1000) * c.rate));
    while (sent < due) publishFn(c.channel, payload(c.size, sent++));
    if (sent >= c.count) {
      clearInterval(publishing);
      process.send!({ type: 'published', count: sent });
    }
  }, c.tickMs ?? 10);
}

process.on('message', async (c: Cmd) => {
  if (c.type === 'publish') publishAtRate(c);
  else if (c.type === 'cpu') {
    const u = process.cpuUsage();
    process.send!({ type: 'cpu', user: u.user, system: u.system, threads: threadTimes() });
  } else if (c.type === 'stop') {
    if (publishing) clearInterval(publishing);
    await stop();
    process.exit(0);
  }
});

// Before start(), as bench/servers/child.ts: BENCH_SERVER_CPUS pins this server off the load generators' CPU.
placeServerProcess();
await start();
process.send!({ type: 'ready', port });
