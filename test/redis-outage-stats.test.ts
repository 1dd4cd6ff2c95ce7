// GET /api/stats (the dashboard's feed) during a Redis outage: the host's own figures still answer, with
// the Redis link shown down, rather than a 503 for the one part of it (the busiest channels) read from Redis.
import t from 'tap';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { metric, startHost, startRedis, until } from './helpers/redis.js';

const R = await startRedis(t);
const A = await startHost(t, R.url, 'rt', { workers: 2 });

t.test('/api/stats answers while Redis is away, and shows it', async (t) => {
  const c = await TestClient.connect(A.url + '/ws');
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'busy' })).ok, true);
  const before = await api(A.http, '/api/stats');
  t.equal(before.status, 200);
  t.same(before.body.redis, { enabled: true, connected: 2, shards: 2 });
  t.same(before.body.topChannels.map((ch: { name: string }) => ch.name), ['busy'], 'the busiest channels, read from Redis');

  await R.kill();
  await until('the host to notice Redis is gone', async () => (await api(A.http, '/health', undefined, { key: null })).body.redis.connected === 0);
  // Polled as the dashboard does, until the busiest channels are past their 5 s refresh: read again then.
  let during = await api(A.http, '/api/stats');
  const statuses = new Set<number>();
  for (;;) {
    statuses.add(during.status);
    if (during.status !== 200 || during.body.time - before.body.time > 6000) break;
    await new Promise((r) => setTimeout(r, 500));
    during = await api(A.http, '/api/stats');
  }
  t.same([...statuses], [200], `answered: ${JSON.stringify(during.body).slice(0, 200)}`);
  t.same(during.body.redis, { enabled: true, connected: 0, shards: 2 }, 'the Redis link is shown down');
  t.same(during.body.threads.filter((th: { redisUp?: boolean }) => th.redisUp !== undefined).map((th: { redisUp: boolean }) => th.redisUp), [false, false], 'per shard too');
  t.equal(during.body.connections.total, 1, "the host's own figures");
  t.same(during.body.topChannels.map((ch: { name: string }) => ch.name), ['busy'], 'the last list read');

  await R.start();
  await until('the host to reconnect', async () => (await api(A.http, '/api/stats')).body.redis?.connected === 2);
});

// The channel reads the HTTP API makes straight from Redis (GET /api/channels/…, /users) and a
// lease taken for a placed actor failed with 503 without counting in rt_redis_errors_total, so the
// counter an operator alerts on stayed flat while every such request failed.
t.test('reads from Redis that fail during an outage count in rt_redis_errors_total', async (t) => {
  await until('Redis is back', async () => (await api(A.http, '/health', undefined, { key: null })).body.redis.connected === 2);
  const before = await metric(A, 'rt_redis_errors_total');
  await R.kill();
  await until('the host to notice Redis is gone', async () => (await api(A.http, '/health', undefined, { key: null })).body.redis.connected === 0);
  const READS = 4;
  for (let i = 0; i < READS; i++) {
    const r = await api(A.http, `/api/channels/read-${i}`);
    t.equal(r.status, 503, `the read failed: ${JSON.stringify(r.body)}`);
  }
  const after = await until('the failed reads are counted', async () => {
    const n = await metric(A, 'rt_redis_errors_total');
    return n - before >= READS ? n : undefined;
  });
  t.ok(after - before >= READS, `${after - before} errors counted for ${READS} failed reads`);
  await R.start();
  await until('the host to reconnect', async () => (await api(A.http, '/health', undefined, { key: null })).body.redis.connected === 2);
});
