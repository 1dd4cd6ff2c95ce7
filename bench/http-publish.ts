/**
 * The HTTP publish route alone: a backend POSTs publications to a channel with no subscribers, as fast
 * as 32 concurrent requests allow; server CPU per request, rt-actors' POST /api/publish against the plain
 * uWS baselines' POST /publish (parse, frame, publish, answer). What a publication costs before fan-out.
 * Three measured rounds after a warm-up round of the same size; the median is reported.
 *
 *   node dist/bench/http-publish.js [--quick]
 */
import { backendVia, BenchServer, median, round, type ServerKind } from './lib.js';
import { runPublisher } from './publisher.js';

/** Measured rounds per server; the row gives their median, and the spread (this machine's noise is ±20 %). */
const ROUNDS = 3;

async function run(kind: ServerKind, workers: number, count: number): Promise<Record<string, unknown>> {
  const server = await BenchServer.start(kind, workers);
  try {
    const send = (n: number): Promise<void> => runPublisher({ port: server.port, channel: 'nobody', via: backendVia(kind), pace: { kind: 'burst', count: n }, size: 64 });
    await send(count); // warm-up, as measured
    if (process.env.BENCH_NODE_ARGS) console.error(`-- measuring ${kind}`);
    const rounds: { rate: number; user: number; kernel: number }[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const a = await server.cpuSplit();
      const t0 = performance.now();
      await send(count);
      const elapsed = (performance.now() - t0) / 1000;
      const b = await server.cpuSplit();
      rounds.push({ rate: count / elapsed, user: (b.user - a.user) / count, kernel: (b.system - a.system) / count });
    }
    const middle = (k: 'rate' | 'user' | 'kernel'): number => median(rounds.map((r) => r[k]));
    const users = rounds.map((r) => r.user);
    return {
      bench: 'http-publish',
      server: kind,
      ...(kind === 'rt' ? { shards: workers } : kind === 'uws-threads' ? { threads: workers } : {}),
      requests: count,
      rounds: ROUNDS,
      requests_per_s: Math.round(middle('rate')),
      server_user_us_per_request: round(middle('user'), 1),
      server_user_us_per_request_range: [round(Math.min(...users), 1), round(Math.max(...users), 1)],
      server_kernel_us_per_request: round(middle('kernel'), 1),
    };
  } finally {
    await server.stop();
  }
}

export async function benchHttpPublish(opts: { quick: boolean }): Promise<Record<string, unknown>[]> {
  const count = opts.quick ? 5_000 : 20_000;
  const out: Record<string, unknown>[] = [];
  const only = process.env.BENCH_SERVERS?.split(',');
  for (const [kind, w] of [['uws', 1], ['uws-threads', 2], ['rt', 1], ['rt', 2]] as [ServerKind, number][]) {
    if (!only || only.includes(kind)) out.push(await run(kind, w, count));
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await benchHttpPublish({ quick: process.argv.includes('--quick') })) console.log(JSON.stringify(r));
  process.exit(0);
}
