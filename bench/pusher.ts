/**
 * Pusher-protocol fan-out and idle memory, next to soketi in the same run: 1,000 Pusher-protocol
 * WebSocket subscribers (what pusher-js speaks) on one public channel, fed through each server's
 * Pusher HTTP API by the official `pusher` SDK, from a backend process of its own (publisher.ts).
 * Rows: rt-actors' /app/<key> gateway, rt-actors' native /ws with the same publisher (the baseline the
 * gateway must stay within 1.3× of), and soketi. Server CPU is the server process's own (all threads, user + kernel, /proc/<pid>/stat),
 * so the clients here do not count. Idle memory: RSS growth per connected, subscribed, silent client.
 *
 * soketi is a benchmark-only peer, installed outside the project (NOTES.md):
 *   mkdir -p /tmp/soketi-bench && cd /tmp/soketi-bench && cat > package.json <<'EOF'
 *   { "private": true, "dependencies": { "@soketi/soketi": "1.6.1" },
 *     "overrides": { "uWebSockets.js": "npm:@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0" } }
 *   EOF
 *   npm install
 * (SOKETI_DIR points elsewhere). Its row is an error line when it is not installed, and the run checks
 * that soketi loaded a native uWS binary (that build silently falls back to a slow JS one otherwise).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { now, percentile, round, until } from './lib.js';
import { runPublisher, type Pace } from './publisher.js';

const APP = { id: 'bench', key: 'bench-key', secret: 'bench-secret-0123' };
const SOKETI_DIR = process.env.SOKETI_DIR ?? '/tmp/soketi-bench';
const TICKS_PER_S = 100; // Linux USER_HZ, the unit of utime/stime in /proc/<pid>/stat

interface Proc {
  name: string;
  child: ChildProcess;
  port: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** User and kernel CPU of a process, all its threads, in µs. */
function cpuSplit(pid: number): { user: number; kernel: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(f[11]) / TICKS_PER_S) * 1e6, kernel: (Number(f[12]) / TICKS_PER_S) * 1e6 };
}

function cpuUs(pid: number): number {
  const c = cpuSplit(pid);
  return c.user + c.kernel;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function waitListening(port: number, child: ChildProcess, name: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    const ok = await fetch(`http://127.0.0.1:${port}/`).then(() => true, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${name} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startRt(workers: number, writeDelay = 0): Promise<Proc> {
  const port = await freePort();
  const bin = fileURLToPath(new URL('../../bin/rt-actors.js', import.meta.url));
  const child = spawn(process.execPath, [bin, 'start', '--port', String(port), '--host', '127.0.0.1', '--workers', String(workers), '--api-key', 'bench',
    '--pusher-app-id', APP.id, '--pusher-key', APP.key, '--pusher-secret', APP.secret, '--log-level', 'error', '--history-size', '0',
    '--max-connections', '0', '--max-connections-per-ip', '0', '--connection-rate-per-ip', '0', '--api-rate-limit', '0', '--max-backpressure', '64mb', '--write-delay', String(writeDelay)],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RT_API_KEY: '', RT_REDIS_URL: '' } });
  await waitListening(port, child, 'rt-actors');
  return { name: `rt-actors (${workers} shard${workers > 1 ? 's' : ''}${writeDelay ? `, --write-delay=${writeDelay}` : ''})`, child, port };
}

async function startSoketi(): Promise<Proc> {
  const bin = `${SOKETI_DIR}/node_modules/@soketi/soketi/bin/server.js`;
  if (!existsSync(bin)) throw new Error(`soketi is not installed in ${SOKETI_DIR} (see bench/pusher.ts)`);
  const port = await freePort();
  const child = spawn(process.execPath, [bin, 'start'], {
    cwd: SOKETI_DIR,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      SOKETI_PORT: String(port),
      SOKETI_HOST: '127.0.0.1',
      SOKETI_DEFAULT_APP_ID: APP.id,
      SOKETI_DEFAULT_APP_KEY: APP.key,
      SOKETI_DEFAULT_APP_SECRET: APP.secret,
      SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
      SOKETI_METRICS_ENABLED: 'false',
      SOKETI_DEBUG: '0',
    },
  });
  await waitListening(port, child, 'soketi');
  const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8');
  if (!/uws_[^/\s]*\.node/.test(maps)) throw new Error('soketi did not load a native uWebSockets.js binary; its figures would be of the JS fallback');
  return { name: 'soketi 1.6.1', child, port };
}

async function stop(p: Proc): Promise<void> {
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  p.child.kill('SIGKILL');
}

type Proto = 'pusher' | 'native';

/** Connects and subscribes `n` clients, 100 at a time; resolves once every subscription is confirmed. */
async function subscribers(port: number, proto: Proto, n: number, channel: string, onMessage: (d: { seq: number; t: number } | null) => void): Promise<WebSocket[]> {
  const url = proto === 'pusher' ? `ws://127.0.0.1:${port}/app/${APP.key}?protocol=7&client=js&version=8.4.0` : `ws://127.0.0.1:${port}/ws`;
  const out: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      out.push(ws);
      let ready = false;
      let delivered = 0;
      ws.on('message', (raw) => {
        // Deliveries are only counted (a string test), and one in eight is parsed for its latency: the
        // 1,000 clients share this process, and parsing everything would make them the bottleneck.
        if (ready) {
          const text = raw.toString();
          if (!text.includes('seq')) return;
          if ((delivered++ & 7) !== 0) return onMessage(null);
          const f = JSON.parse(text);
          return onMessage(proto === 'pusher' ? JSON.parse(f.data) : f.data);
        }
        const f = JSON.parse(raw.toString());
        if (proto === 'pusher') {
          if (f.event === 'pusher:connection_established') ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
          else if (f.event === 'pusher_internal:subscription_succeeded') (ready = true), resolve();
        } else {
          if (f.op === 'welcome') ws.send(JSON.stringify({ op: 'subscribe', channel, ref: 1 }));
          else if (f.op === 'reply') (ready = true), resolve();
        }
      });
      ws.once('error', reject);
    })));
  }
  return out;
}

/**
 * How the backend publishes: `rate` events/s spaced evenly, or `burst`: as fast as 32 concurrent HTTP
 * requests allow (issue 15's method for the fan-out table), where several events for one socket land in
 * one event-loop turn and a server that batches them writes them with one syscall. The backend runs in
 * its own process (bench/publisher.ts).
 */
async function fanout(server: Proc, proto: Proto, subs: number, pace: Pace, size: number): Promise<Record<string, unknown>> {
  let delivered = 0;
  const lat: number[] = [];
  const socks = await subscribers(server.port, proto, subs, 'bench', (d) => {
    delivered++;
    if (d) lat.push(now() - d.t);
  });
  await new Promise((r) => setTimeout(r, 300));
  const count = pace.kind === 'rate' ? Math.round(pace.rate * pace.seconds) : pace.count;
  const expected = count * subs;
  const pid = server.child.pid!;
  // What the server burns with these subscribers connected and nothing published (timers, pings,
  // housekeeping), so it can be told apart from the cost of the deliveries.
  const idle0 = cpuUs(pid);
  const idleT0 = now();
  await new Promise((r) => setTimeout(r, 3000));
  const idleUsPerS = (cpuUs(pid) - idle0) / ((now() - idleT0) / 1000);
  const split0 = cpuSplit(pid);
  const cpu0 = split0.user + split0.kernel;
  const t0 = now();
  await runPublisher({ port: server.port, via: { kind: 'pusher', app: APP }, pace, size });
  const published = (now() - t0) / 1000;
  await until(() => delivered >= expected, 30_000);
  const elapsed = (now() - t0) / 1000;
  const split1 = cpuSplit(pid);
  const cpu = split1.user + split1.kernel - cpu0;
  socks.forEach((s) => s.terminate());
  lat.sort((a, b) => a - b);
  return {
    bench: 'pusher',
    server: server.name,
    protocol: proto === 'pusher' ? 'pusher /app/<key>' : 'native /ws',
    subscribers: subs,
    pace: pace.kind === 'rate' ? `${pace.rate} events/s` : `burst, 32 concurrent requests`,
    publish_rate: Math.round(count / published),
    payload_bytes: size,
    delivered,
    expected,
    deliveries_per_s: Math.round(delivered / elapsed),
    server_cpu_us_per_delivery: round(cpu / Math.max(1, delivered), 3),
    // Kernel time is mostly the socket writes, one per message per socket when messages are spaced out
    // (on loopback it includes the receiving side's TCP processing); user time is the server's own work.
    server_user_us_per_delivery: round((split1.user - split0.user) / Math.max(1, delivered), 3),
    server_kernel_us_per_delivery: round((split1.kernel - split0.kernel) / Math.max(1, delivered), 3),
    server_idle_cpu_ms_per_s: round(idleUsPerS / 1000, 1),
    // The same, less what the server would have burnt idle over the run.
    server_cpu_us_per_delivery_net: round(Math.max(0, cpu - idleUsPerS * elapsed) / Math.max(1, delivered), 3),
    latency_ms_p50: round(percentile(lat, 50), 2),
    latency_ms_p99: round(percentile(lat, 99), 2),
  };
}

async function idleMemory(server: Proc, n: number): Promise<Record<string, unknown>> {
  const pid = server.child.pid!;
  await new Promise((r) => setTimeout(r, 500));
  const before = rssBytes(pid);
  const socks = await subscribers(server.port, 'pusher', n, 'idle', () => {});
  await new Promise((r) => setTimeout(r, 1500));
  const after = rssBytes(pid);
  socks.forEach((s) => s.terminate());
  return { bench: 'pusher-memory', server: server.name, connections: n, rss_before_mb: round(before / 2 ** 20, 1), rss_after_mb: round(after / 2 ** 20, 1), bytes_per_connection: Math.round((after - before) / n) };
}

export async function benchPusher(opts: { quick: boolean }): Promise<Record<string, unknown>[]> {
  const subs = 1000;
  // The spaced pace: an offered load the 1,000 clients in this process absorb (about 30k deliveries/s
  // here), so every event is its own socket write. The burst pace: as many events as 32 concurrent
  // requests push through, which is what the fan-out table of issue 15 measures.
  const paces: Pace[] = [
    { kind: 'rate', rate: opts.quick ? 15 : 20, seconds: opts.quick ? 3 : 10 },
    { kind: 'burst', count: opts.quick ? 100 : 400 },
  ];
  const size = 64;
  const idle = opts.quick ? 1000 : 5000;
  const only = process.env.BENCH_PUSHER_PACE; // 'rate' or 'burst' to run one pace
  const rows: Record<string, unknown>[] = [];
  const measure = async (start: () => Promise<Proc>, protos: Proto[]): Promise<void> => {
    let server: Proc | undefined;
    try {
      server = await start();
      for (const pace of paces.filter((p) => !only || p.kind === only)) {
        for (const proto of protos) rows.push(await fanout(server, proto, subs, pace, size));
      }
    } catch (err) {
      rows.push({ bench: 'pusher', error: (err as Error).message });
    } finally {
      if (server) await stop(server);
    }
    if (process.env.BENCH_PUSHER_MEMORY === '0') return;
    // Memory on a fresh process of each server, so the fan-out run's garbage does not count.
    try {
      server = await start();
      rows.push(await idleMemory(server, idle));
    } catch (err) {
      rows.push({ bench: 'pusher-memory', error: (err as Error).message });
    } finally {
      if (server) await stop(server);
    }
  };
  await measure(() => startRt(1), ['pusher', 'native']);
  for (const ms of (process.env.BENCH_WRITE_DELAY ?? '').split(',').filter(Boolean).map(Number)) await measure(() => startRt(1, ms), ['pusher']);
  await measure(() => startSoketi(), ['pusher']);
  for (const pace of ['rate', 'burst']) {
    const cpu = (server: string, protocol: string) =>
      rows.find((r) => r.server === server && r.protocol === protocol && String(r.pace).startsWith('burst') === (pace === 'burst'))
        ?.server_cpu_us_per_delivery_net as number | undefined;
    const rtP = cpu('rt-actors (1 shard)', 'pusher /app/<key>');
    const rtN = cpu('rt-actors (1 shard)', 'native /ws');
    const so = cpu('soketi 1.6.1', 'pusher /app/<key>');
    if (!rtP && !so) continue;
    rows.push({
      bench: 'pusher-ratios',
      pace,
      soketi_cpu_over_rt_pusher: rtP && so ? round(so / rtP, 2) : null,
      rt_pusher_cpu_over_native: rtP && rtN ? round(rtP / rtN, 2) : null,
    });
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const row of await benchPusher({ quick: process.argv.includes('--quick') })) console.log(JSON.stringify(row));
  process.exit(0);
}
