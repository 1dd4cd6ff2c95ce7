/**
 * Fan-out and latency: one channel, many subscribers, publishes at a fixed rate from inside the server
 * process (latency also with the publications POSTed over HTTP by a backend, this process), or as fast
 * as a backend process's 32 concurrent HTTP requests go. Measures deliveries/s seen by the clients,
 * server CPU per 1M deliveries (process.cpuUsage of the server process, all threads, user and kernel),
 * and publish→deliver latency percentiles — for rt-actors, a plain single-thread uWebSockets.js topic
 * server, plain uWebSockets.js on as many threads as rt-actors has shards, and socket.io 4 (default
 * engine), in the same run.
 */
import { io as ioClient, type Socket } from 'socket.io-client';
import type WebSocket from 'ws';
import { BenchServer, connectMany, now, backendVia, interleave, percentile, repeatRounds, round, summariseRounds, threadDelta, until, warmChannels, warmInHalves, warmPublications, type ServerKind } from './lib.js';
import { runPublisher } from './publisher.js';
import { rawClient, subscribeRaw, type RawProtocol } from './raw-ws.js';

interface Load { subscribers: number; rate: number; seconds: number; size: number }

interface Sub { close(): void }

/** `onMessage(t)` once per delivery; `t`, the publication's send time, on a sample of them (1 in 8). */
async function subscribeAll(kind: ServerKind, port: number, n: number, channel: string, onMessage: (t?: number) => void): Promise<Sub[]> {
  if (kind === 'socketio') {
    const socks: Socket[] = [];
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => new Promise<void>((resolve, reject) => {
        const s = ioClient(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
        s.on('m', (_ch: string, data: { seq: number; t: number }) => onMessage((data.seq & 7) === 0 ? data.t : undefined));
        s.once('connect', () => s.emit('subscribe', { channel }, () => resolve()));
        s.once('connect_error', reject);
        socks.push(s);
      })));
    }
    return socks.map((s) => ({ close: () => s.close() }));
  }
  if (rawClient) return subscribeRaw(port, n, nativeRaw(channel), onMessage);
  const pending: Promise<void>[] = [];
  const sockets = await connectMany(`ws://127.0.0.1:${port}/ws`, n, (ws: WebSocket) => {
    let subscribed!: () => void;
    pending.push(new Promise<void>((r) => (subscribed = r)));
    ws.on('message', (raw) => {
      const text = raw.toString();
      // Fast path: deliveries carry "op":"message"; parse only the data we time.
      if (text.charCodeAt(7) === 109 /* m */ && text.startsWith('{"op":"message"')) {
        const f = JSON.parse(text);
        onMessage((f.data.seq & 7) === 0 ? f.data.t : undefined);
      } else if (text.includes('"reply"')) subscribed();
      else if (text.includes('"welcome"')) ws.send(JSON.stringify({ op: 'subscribe', channel, ref: 1 }));
    });
  });
  await Promise.all(pending);
  return sockets.map((s) => ({ close: () => s.terminate() }));
}

/** The native protocol over the raw client: subscribe after the welcome, confirmed by its reply. */
const nativeRaw = (channel: string): RawProtocol => ({
  path: '/ws',
  delivery: Buffer.from('{"op":"message"'),
  sentAt: (text) => JSON.parse(text).data.t,
  control: (text, sock, subscribed) => {
    if (text.includes('"reply"')) subscribed();
    else if (text.includes('"welcome"')) sock.send(JSON.stringify({ op: 'subscribe', channel, ref: 1 }));
  },
});

/** BENCH_WORKERS=1,2,4 measures rt-actors (and uws-threads) at each shard (thread) count (default: 2). */
const shardCounts = (process.env.BENCH_WORKERS?.split(',').map(Number) ?? [2]);
/** The thread counts a server is measured at: the single-threaded baselines once. */
const threadCounts = (kind: ServerKind): number[] => (kind === 'rt' || kind === 'uws-threads' ? shardCounts : [2]);

/**
 * How the publications enter the server: from inside its process at `rate`, as HTTP POSTs from this
 * process at `rate`, or (`backend`, issue 15's method) from a backend process as fast as 32 concurrent
 * HTTP requests allow (`rate × seconds` of them).
 */
type Via = 'process' | 'http' | 'backend';

/**
 * Publications on side channels (8 subscribers each; one channel owned by each shard, see warmChannels)
 * before a row is measured: BENCH_WARM_PUBS, default 20,000, sent the way the row's load is. V8
 * optimises a function after enough calls, and rt-actors' per-publication functions (ring drain, frame decode, the actor's publish, the wire encoding) are called once per publication: at
 * 200/s the first thousands of them run in V8's baseline tier, with its inline-cache stubs, while the
 * compiler threads work. Measured on the 2-shard fan-out row (user CPU per 1M deliveries): 430–680 ms
 * after 200 publications on the measured channel, 303 after 2,000, 232–275 after 4,000–6,000; after
 * side-channel warm-ups, 421 after 5,000 and 291 after 20,000 (the uWS baseline: 190–235, little
 * JavaScript). A server that runs for hours is in the warm state, so that is the one measured; the
 * side channel of a few subscribers makes the warm-up take seconds instead of the minutes the
 * measured channel's 1,000 clients would need. 0 skips it (the figures before 2026-11-26 11:00).
 */
async function warmJit(kind: ServerKind, server: BenchServer, workers: number, via: Via, size: number): Promise<void> {
  const pubs = warmPublications();
  if (pubs === 0) return;
  // As the measured load comes (same route, same publisher), on a channel owned by each shard.
  const channels = warmChannels(kind === 'rt' ? workers : 1);
  await warmInHalves(
    channels,
    pubs,
    (ch, n, onMessage) => subscribeAll(kind, server.port, n, ch, onMessage),
    async (each) => {
      await Promise.all(
        channels.map((channel) =>
          via === 'backend'
            ? runPublisher({ port: server.port, channel, via: backendVia(kind), pace: { kind: 'burst', count: each }, size })
            : via === 'http'
              ? server.publishOverHttp(kind, channel, 5_000 / channels.length, each, size)
              : server.publish(channel, 10_000 / channels.length, each, size),
        ),
      );
      return each;
    },
  );
}

async function run(kind: ServerKind, load: Load, workers = 2, via: Via = 'process'): Promise<Record<string, unknown>> {
  // BENCH_WRITE_DELAY=ms: rt-actors with --write-delay (as in the socketio and pusher suites).
  const server = await BenchServer.start(kind, workers, kind === 'rt' && process.env.BENCH_WRITE_DELAY ? { writeDelay: Number(process.env.BENCH_WRITE_DELAY) } : {});
  try {
    let delivered = 0;
    const lat: number[] = [];
    const subs = await subscribeAll(kind, server.port, load.subscribers, 'bench', (t) => {
      delivered++;
      if (t !== undefined) lat.push(now() - t);
    });
    await new Promise((r) => setTimeout(r, 300));
    await warmJit(kind, server, workers, via, load.size);
    // Then the measured load itself, once, not measured: a change of channel or of publisher after the
    // side channel deoptimises a few functions and invalidates the optimised code of others (V8's
    // --trace-opt/--trace-deopt: "wrong map", "code dependencies"), and they must be optimised again
    // before the measurement starts. For the backend rows a quarter of the load was not enough: a
    // dozen per-publication functions were still being compiled in the measured window.
    const publishAll = (count: number): Promise<unknown> =>
      via === 'backend'
        ? runPublisher({ port: server.port, via: backendVia(kind), pace: { kind: 'burst', count }, size: load.size })
        : via === 'http'
          ? server.publishOverHttp(kind, 'bench', load.rate, count, load.size)
          : server.publish('bench', load.rate, count, load.size);
    const warm = via === 'backend' ? load.rate * load.seconds : load.rate;
    await publishAll(warm);
    await until(() => delivered >= warm * load.subscribers, 20_000);
    delivered = 0;
    lat.length = 0;
    const count = load.rate * load.seconds;
    const expected = count * load.subscribers;
    // With BENCH_NODE_ARGS="--trace-deopt" the server's trace and these marks share stderr, in order.
    if (process.env.BENCH_NODE_ARGS) console.error(`-- measuring ${kind} ${via}`);
    const cpu0 = await server.cpuSplit();
    const t0 = now();
    await publishAll(count);
    await until(() => delivered >= expected, 20_000);
    const elapsed = (now() - t0) / 1000;
    const cpu1 = await server.cpuSplit();
    // BENCH_THREADS=1: where the window's CPU went, per thread (user+kernel ms), on stderr.
    if (process.env.BENCH_THREADS) console.error(`-- threads ${kind} ${workers} ${via}: ${threadDelta(cpu0, cpu1)}`);
    const user = cpu1.user - cpu0.user;
    const kernel = cpu1.system - cpu0.system;
    const cpu = user + kernel;
    subs.forEach((s) => s.close());
    lat.sort((a, b) => a - b);
    return {
      server: kind,
      ...(kind === 'rt' ? { shards: workers } : kind === 'uws-threads' ? { threads: workers } : {}),
      published_via: via,
      subscribers: load.subscribers,
      publish_rate: via === 'backend' ? Math.round(count / elapsed) : load.rate,
      payload_bytes: load.size,
      delivered,
      expected,
      deliveries_per_s: Math.round(delivered / elapsed),
      server_cpu_ms_per_1m_deliveries: round(cpu / 1000 / (delivered / 1e6), 1),
      // Kernel time is mostly the socket writes; user time is the server's own work.
      server_user_ms_per_1m_deliveries: round(user / 1000 / (delivered / 1e6), 1),
      server_kernel_ms_per_1m_deliveries: round(kernel / 1000 / (delivered / 1e6), 1),
      latency_ms_p50: round(percentile(lat, 50), 3),
      latency_ms_p99: round(percentile(lat, 99), 3),
      latency_ms_p999: round(percentile(lat, 99.9), 3),
    };
  } finally {
    await server.stop();
  }
}

/** One measured config per server and thread count, named `uws` or `<kind>-<threads>` in the rows. */
function configsOf(kinds: ServerKind[], bench: string, load: Load, via: Via): Array<{ name: string; run: () => Promise<Record<string, unknown>> }> {
  return kinds.flatMap((k) => threadCounts(k).map((w) => ({ name: k === 'uws' ? 'uws' : `${k}-${w}`, run: async () => ({ bench, ...(await run(k, load, w, via)) }) })));
}

/**
 * The backend rows, BENCH_REPEAT rounds (default 1), every server once per round in turn. With more than
 * one round each server gets a row with its median CPU per 1M deliveries and the range, and a summary
 * row gives each server's ratio to one-thread uWS *in the same round*, median and range.
 */
async function backendRounds(kinds: ServerKind[], load: Load): Promise<Record<string, unknown>[]> {
  const rows = await interleave(repeatRounds(), configsOf(kinds, 'fanout', load, 'backend'));
  if (repeatRounds() === 1) return [...rows.values()].map((list) => list[0]!);
  return summariseRounds(rows, 'server_cpu_ms_per_1m_deliveries', 'uws', { bench: 'fanout', summary: 'backend pace: CPU per delivery ÷ one-thread uWS in the same round' });
}

/**
 * The latency rows: per server and thread count, in-process then over HTTP (BENCH_VIA=process or http
 * runs one of them). With BENCH_REPEAT=n, n interleaved rounds, each row the median p99 of its
 * config, and a summary row per way of publishing with each config's p99 ÷ one-thread uWS's in the
 * same round.
 */
async function latencyRounds(kinds: ServerKind[], load: Load): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (const via of ['process', 'http'] as const) {
    if (process.env.BENCH_VIA && process.env.BENCH_VIA !== via) continue;
    const rows = await interleave(repeatRounds(), configsOf(kinds, 'latency', load, via));
    if (repeatRounds() === 1) out.push(...[...rows.values()].map((list) => list[0]!));
    else out.push(...summariseRounds(rows, 'latency_ms_p99', 'uws', { bench: 'latency', published_via: via, summary: 'p99 ÷ one-thread uWS in the same round' }));
  }
  return out;
}

export async function benchFanout(opts: { quick: boolean }): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  // Throughput: a rate the client process can absorb on a shared 2-core machine.
  // BENCH_FANOUT=fanout, backend or latency: one group of rows.
  const group = (g: string): boolean => !process.env.BENCH_FANOUT || process.env.BENCH_FANOUT === g;
  const fan: Load = opts.quick ? { subscribers: 500, rate: 100, seconds: 2, size: 64 } : { subscribers: 1000, rate: 200, seconds: 8, size: 64 };
  // uws-threads: plain uWS on as many threads as rt-actors has shards (bench/servers/uws-threads.ts),
  // to tell what threads cost on this machine from what rt-actors costs.
  const kinds = (process.env.BENCH_SERVERS?.split(',') ?? ['uws', 'uws-threads', 'rt', 'socketio']) as ServerKind[];
  for (const kind of group('fanout') ? kinds : []) {
    for (const w of threadCounts(kind)) out.push({ bench: 'fanout', ...(await run(kind, fan, w)) });
  }
  // Issue 15's method: a backend process publishing over HTTP as fast as 32 concurrent requests allow
  // (the clients, not the servers, set the pace: deliveries back up, and servers write several
  // publications per socket write). Not for the socket.io baseline (no HTTP publish route).
  const burst: Load = { ...fan, rate: opts.quick ? 200 : 500, seconds: opts.quick ? 1 : 4 };
  if (group('backend')) out.push(...(await backendRounds(kinds.filter((k) => k !== 'socketio'), burst)));
  // Latency at a fixed, modest rate so queues stay short.
  const lat: Load = opts.quick ? { subscribers: 100, rate: 200, seconds: 2, size: 64 } : { subscribers: 100, rate: 500, seconds: 10, size: 64 };
  if (group('latency')) out.push(...(await latencyRounds(kinds.filter((k) => k !== 'socketio'), lat)));
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await benchFanout({ quick: process.argv.includes('--quick') })) console.log(JSON.stringify(r));
}
