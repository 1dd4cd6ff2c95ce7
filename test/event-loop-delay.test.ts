// rt_event_loop_delay_seconds: how late a thread's event loop ran, per thread. The probe is coarse
// (200 ms) while a thread is at rest, so an idle server does not wake 50 times a second per thread, and
// fine (20 ms) once it works; the figure is the lateness of the probe's ticks, not their interval.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { parsePrometheus, valueOf, type Family } from './helpers/prom.js';
import { until } from './helpers/redis.js';

const THREADS = ['0', '1', 'main'];
const SHARDS = ['0', '1'];

async function scrape(base: string): Promise<Map<string, Family>> {
  return parsePrometheus(await (await fetch(base + '/metrics')).text());
}
const delay = (f: Map<string, Family>, thread: string, stat: string): number => valueOf(f, 'rt_event_loop_delay_seconds', { thread, stat });

t.test('a thread at rest reports how late its loop ran, not the probe interval', async (t) => {
  const s = await startServer(t);
  const first = await scrape(s.http);
  // A thread starts busy (loading, attaching its app), probing every 20 ms.
  t.ok(THREADS.every((th) => [0.02, 0.2].includes(valueOf(first, 'rt_event_loop_delay_resolution_seconds', { thread: th }))), 'every thread reports its probe interval');
  // Reading the histogram as it comes gave the interval between probe ticks: 0.020 s at rest.
  const f = await until('every thread at rest with a p50 delay under 15 ms', async () => {
    const f = await scrape(s.http);
    return THREADS.every((th) => delay(f, th, 'max') > 0 && delay(f, th, 'p50') < 0.015) ? f : undefined;
  });
  for (const th of THREADS) {
    t.ok(delay(f, th, 'p50') < 0.015, `thread ${th}: p50 is a lateness (${delay(f, th, 'p50')} s), not the 0.020 s interval`);
    t.ok(delay(f, th, 'max') >= delay(f, th, 'p50'), `thread ${th}: max ≥ p50`);
  }
});

t.test('a long stall of a thread at rest still shows in its delay', async (t) => {
  const s = await startServer(t, { actors: fileURLToPath(new URL('./fixtures/stall', import.meta.url)) });
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'stall-1' })).ok, true);
  // At rest: the shards' last second was under 2 % busy, so they probe every 200 ms. Polled slowly, so
  // the scrapes themselves do not keep a shard busy.
  await until(
    'both shards at rest',
    async () => {
      const f = await scrape(s.http);
      return SHARDS.every((th) => valueOf(f, 'rt_event_loop_delay_resolution_seconds', { thread: th }) === 0.2 && delay(f, th, 'max') < 0.1);
    },
    40_000,
    300,
  );
  const r = await c.request({ op: 'publish', channel: 'stall-1', event: 'hold', data: 600 });
  t.same(r.data, { stalled: 600 }, 'the actor held its thread for 600 ms');
  const f = await until('the stall in the owner shard delay', async () => {
    const f = await scrape(s.http);
    return SHARDS.some((th) => delay(f, th, 'max') >= 0.3) ? f : undefined;
  });
  const worst = Math.max(...SHARDS.map((th) => delay(f, th, 'max')));
  t.ok(worst >= 0.3 && worst < 5, `the owner reported a delay of ${worst} s for a 600 ms stall`);
});
