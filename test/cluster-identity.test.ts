// Host identity: a stable host id (--host-id, or generated at start) in /health and in where
// GET /api/channels/:name says the channel's actor runs.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { api, startServer } from './helpers/server.js';
import { dropNamespace, machineRedis, startHost } from './helpers/redis.js';

t.test('one host without Redis: generated id, channels owned locally', async (t) => {
  const s = await startServer(t);
  const health = (await api(s.http, '/health', undefined, { key: null })).body;
  t.match(health.host, /^[A-Za-z0-9._-]+-[0-9a-f]{6}$/, 'a generated host id: hostname plus a random suffix');
  t.equal(s.config.hostId, health.host, 'the server reports the id it runs with');
  const info = (await api(s.http, '/api/channels/room-1')).body;
  t.same(info.owner, { host: health.host, shard: info.owner.shard, placement: 'local' });
  t.ok(info.owner.shard === 0 || info.owner.shard === 1, 'owned by one of the two shards');
});

t.test('--host-id is validated and shown; with Redis, plain channels are per host', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const A = await startHost(t, redis.url, ns, { args: ['--host-id', 'alpha-1'] });
  const B = await startHost(t, redis.url, ns);
  t.equal((await api(A.http, '/health', undefined, { key: null })).body.host, 'alpha-1');
  const other = (await api(B.http, '/health', undefined, { key: null })).body.host;
  t.not(other, 'alpha-1', 'each host has its own id');
  t.same((await api(A.http, '/api/channels/news')).body.owner, { host: 'alpha-1', shard: 0, placement: 'per-host' });
  t.same((await api(B.http, '/api/channels/news')).body.owner, { host: other, shard: 0, placement: 'per-host' });
  for (const bad of ['has space', 'a|b', 'x'.repeat(65), '{tag}']) {
    const err = await startHost(t, redis.url, ns, { args: ['--host-id', bad] }).then(() => undefined, (e: Error) => e);
    t.match(err?.message ?? 'started', /--host-id/, `"${bad.slice(0, 10)}" refused with a message naming --host-id`);
  }
});

t.test('with Redis, a custom actor\'s channel is leased before its first activation', async (t) => {
  // docs/http-api.md: `leased` for a custom actor's channel, `host` null while nobody holds the lease.
  // A channel no event has reached yet has nothing in Redis: it was reported `per-host` (every host
  // running its own activation), which is what the actor's one activation cluster-wide rules out.
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const actors = fileURLToPath(new URL('./fixtures/cluster-actors', import.meta.url));
  const A = await startHost(t, redis.url, ns, { args: ['--actors', actors, '--host-id', 'alpha-1'] });
  t.same((await api(A.http, '/api/channels/auction-never-used')).body.owner, { host: null, shard: null, placement: 'leased' });
  t.same((await api(A.http, '/api/channels/news')).body.owner, { host: 'alpha-1', shard: 0, placement: 'per-host' }, 'a channel no actor serves stays per host');
});
