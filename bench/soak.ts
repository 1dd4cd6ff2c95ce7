/**
 * Soak: thousands of well-behaved subscribers, plus flooders, slow readers and clients sending garbage,
 * for minutes. Reports whether the well-behaved clients received everything and kept their latency,
 * what happened to the abusive ones, and whether server memory returned to its baseline afterwards.
 *
 *   npm run soak                 # 3 minutes, 2000 subscribers
 *   npm run soak -- --minutes=10 --subscribers=5000
 *   npm run soak -- --quick      # 20 s smoke run
 *   npm run soak -- --proxied=10000   # clients behind a simulated reverse proxy (last phase)
 */
import WebSocket from 'ws';
import { BenchServer, connectMany, now, percentile, round } from './lib.js';

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def);
const quick = process.argv.includes('--quick');
const seconds = quick ? 20 : arg('minutes', 3) * 60;
const subscribers = quick ? 500 : arg('subscribers', 2000);
const abusers = quick ? 10 : arg('abusers', 30);
const rate = 20; // publications per second to the soak channel

type Kind = 'flood' | 'slow' | 'garbage';
const mb = (n: number) => round(n / 1048576, 1);

async function runPhase(server: BenchServer, seconds: number): Promise<Record<string, unknown>[]> {
  const url = `ws://127.0.0.1:${server.port}/ws`;
  const lat: number[] = [];
  let received = 0;
  let gaps = 0;
  const lastSeq = new Map<WebSocket, number>();
  const good = await connectMany(url, subscribers, (ws) => {
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString());
      if (f.op === 'welcome') ws.send(JSON.stringify({ op: 'subscribe', channel: 'soak' }));
      else if (f.op === 'message') {
        received++;
        const prev = lastSeq.get(ws);
        if (prev !== undefined && f.data.seq !== prev + 1) gaps++;
        lastSeq.set(ws, f.data.seq);
        if ((f.data.seq & 3) === 0) lat.push(now() - f.data.t);
      }
    });
  });
  await new Promise((r) => setTimeout(r, 1000));

  const stats: Record<Kind, { connects: number; closes: Record<number, number> }> = {
    flood: { connects: 0, closes: {} },
    slow: { connects: 0, closes: {} },
    garbage: { connects: 0, closes: {} },
  };
  let running = true;
  const abuse = (kind: Kind) => {
    if (!running) return;
    stats[kind].connects++;
    const ws = new WebSocket(url);
    let timer: NodeJS.Timeout | undefined;
    ws.on('open', () => {
      if (kind === 'slow') {
        ws.send(JSON.stringify({ op: 'subscribe', channel: 'soak' }));
        ws.send(JSON.stringify({ op: 'subscribe', channel: 'soak-big' }));
        // Stop reading, then read again later: by then the server must have closed it as a slow consumer.
        setTimeout(() => (ws as unknown as { _socket?: { pause(): void } })._socket?.pause(), 200);
        setTimeout(() => (ws as unknown as { _socket?: { resume(): void } })._socket?.resume(), 10_000);
      } else {
        timer = setInterval(() => {
          for (let i = 0; i < 50 && ws.readyState === ws.OPEN; i++) {
            ws.send(kind === 'flood' ? JSON.stringify({ op: 'publish', channel: 'soak', event: 'spam', data: 'x'.repeat(100) }) : Buffer.from([0xc1, 0x00, Math.random() * 255]));
          }
        }, 10);
      }
    });
    const done = (code?: number) => {
      if (timer) clearInterval(timer);
      if (code !== undefined) stats[kind].closes[code] = (stats[kind].closes[code] ?? 0) + 1;
      setTimeout(() => abuse(kind), 200);
    };
    ws.on('close', (code) => done(code));
    ws.on('error', () => {});
    if (kind === 'slow') setTimeout(() => ws.terminate(), 20_000);
  };
  for (let i = 0; i < abusers; i++) (['flood', 'slow', 'garbage'] as const).forEach(abuse);

  const cpu0 = await server.cpuMicros();
  // A big-payload channel that only the slow readers subscribe to, to fill their buffers.
  const big = server.publish('soak-big', 200, seconds * 200, 16 * 1024);
  const t0 = Date.now();
  await server.publish('soak', rate, seconds * rate, 64);
  await big;
  const expected = seconds * rate * subscribers;
  const deadline = Date.now() + 10_000;
  while (received < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const cpu = (await server.cpuMicros()) - cpu0;
  const peak = await server.memory();
  running = false;
  for (const ws of good) ws.terminate();
  await new Promise((r) => setTimeout(r, 3000));
  lat.sort((a, b) => a - b);
  return [
    { bench: 'soak', figure: 'well-behaved', seconds, subscribers, expected, received, gaps, complete: received === expected && gaps === 0, latency_ms_p50: round(percentile(lat, 50), 2), latency_ms_p99: round(percentile(lat, 99), 2), latency_ms_p999: round(percentile(lat, 99.9), 2) },
    ...(['flood', 'slow', 'garbage'] as const).map((k) => ({ bench: 'soak', figure: `abusive-${k}`, clients: abusers, connections: stats[k].connects, close_codes: stats[k].closes })),
    { bench: 'soak', figure: 'load', rss_peak_mb: mb(peak.rss), server_cpu_s: round(cpu / 1e6, 1), wall_s: round((Date.now() - t0) / 1000, 1) },
  ];
}

/**
 * Clients behind a reverse proxy: every socket comes from 127.0.0.1 and carries its own
 * X-Forwarded-For. With --trust-proxy each is counted by its own address, so the default connection
 * rate (1,000/s per IP) and a per-IP cap of 50 refuse none of them; one address past its cap still
 * is refused. Without --trust-proxy all of them would share 127.0.0.1's limits.
 */
async function proxyPhase(count: number): Promise<Record<string, unknown>> {
  const perIp = 50;
  const server = await BenchServer.start('rt', 2, { trustProxy: ['127.0.0.1'], maxConnectionsPerIp: perIp, connectionRatePerIp: 1000, maxConnections: 100_000 });
  const url = `ws://127.0.0.1:${server.port}/ws`;
  const open: WebSocket[] = [];
  const statuses: Record<string, number> = {};
  const connect = (forwardedFor: string) =>
    new Promise<void>((resolve) => {
      const ws = new WebSocket(url, { headers: { 'x-forwarded-for': forwardedFor }, perMessageDeflate: false });
      const count = (k: string) => ((statuses[k] = (statuses[k] ?? 0) + 1), resolve());
      ws.once('open', () => (open.push(ws), count('101')));
      ws.once('unexpected-response', (_req, res) => count(String(res.statusCode)));
      ws.once('error', (err) => count(`error ${err.message}`));
    });
  const t0 = Date.now();
  for (let i = 0; i < count; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, count - i) }, (_, k) => connect(`10.${(i + k) >> 16}.${((i + k) >> 8) & 255}.${(i + k) & 255}`)));
  }
  const seconds = (Date.now() - t0) / 1000;
  const distinct = { ...statuses };
  // One address past its own cap: refused with 429 while everyone else stays connected.
  for (const k of Object.keys(statuses)) delete statuses[k];
  for (let i = 0; i < perIp + 10; i++) await connect('192.0.2.1');
  const same = { ...statuses };
  for (const ws of open) ws.terminate();
  await server.stop();
  return {
    bench: 'soak',
    figure: 'behind-proxy',
    clients: count,
    admitted: distinct['101'] ?? 0,
    refused: count - (distinct['101'] ?? 0),
    connect_rate_per_s: round(count / seconds, 0),
    one_address_statuses: same,
    ok: distinct['101'] === count && (same['429'] ?? 0) >= 10,
  };
}

/**
 * A warm-up phase first brings the process to its working size (allocators keep freed pages), then the
 * measured phase runs; memory "returned to baseline" compares RSS after the measured phase with RSS after
 * the warm-up — a leak grows between the two, retention does not.
 */
async function main(): Promise<void> {
  // Production defaults for the limits (the fan-out benchmarks raise some of them).
  const server = await BenchServer.start('rt', 2, { maxBackpressure: 1024 * 1024, maxConnectionsPerIp: 100_000, connectionRatePerIp: 0 });
  const initial = await server.memory();
  await runPhase(server, quick ? 8 : 30);
  const baseline = await server.memory();
  const rows = await runPhase(server, seconds);
  const after = await server.memory();
  for (const r of rows) console.log(JSON.stringify(r));
  console.log(JSON.stringify({
    bench: 'soak',
    figure: 'memory',
    rss_initial_mb: mb(initial.rss),
    rss_after_warmup_mb: mb(baseline.rss),
    rss_after_run_mb: mb(after.rss),
    returned_to_baseline: after.rss <= baseline.rss * 1.1 + 8 * 1048576,
  }));
  await server.stop();
  console.log(JSON.stringify(await proxyPhase(quick ? 2000 : arg('proxied', 10_000))));
  process.exit(0);
}

await main();
