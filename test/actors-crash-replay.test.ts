// A custom actor's owner shard crashes: the subscribers on the other shards are re-registered with the
// replacement actor, whose authorize runs again. It must see the data they subscribed with (a pin, a
// room password): without it such an actor refused every survivor, who then silently stopped receiving.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, startServer } from './helpers/server.js';
import { channelOwnedBy, clientOnShard, until } from './helpers/faults.js';
import { randomBytes } from 'node:crypto';
import { dropNamespace, machineRedis } from './helpers/redis.js';

const fixtures = fileURLToPath(new URL('./fixtures/actors', import.meta.url));

t.test("survivors of an owner crash are authorized again with their subscribe data and keep receiving", async (t) => {
  const s = await startServer(t, { actors: fixtures });
  const channel = channelOwnedBy('vault-crash-', 0, 2);
  const { secretFor } = await import('./fixtures/actors/lib/secrets.js');
  const x = await clientOnShard(s.url + '/ws', 1, t);
  t.equal((await x.request({ op: 'subscribe', channel, data: { pin: secretFor(channel) } })).ok, true);
  s.crashShard(0);
  await until(async () => (await api(s.http, '/health', undefined, { key: null })).body.workers?.alive === 2, 'shard 0 replaced');
  await until(async () => (await api(s.http, '/api/publish', { channel, event: 'after', data: 1 })).status === 200, 'a publish accepted by the new owner');
  const got = await x.next((f) => f.op === 'message' && f.event === 'after', 10_000);
  t.same(got.data.wrapped, 1, 'x still receives the channel');
  t.equal((await api(s.http, '/api/channels/' + channel)).body.subscribers, 1, 'x is still a subscriber');
});

t.test('a survivor the replacement actor refuses is told it lost the channel (kicked), not left silently without messages', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-actors-replay-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Admits a subscription until the time its data names: authorized at first, refused when replayed later.
  writeFileSync(join(dir, 'lease.ts'), `import { defineActor, ActorError } from 'rt-actors';
export default defineActor({
  match: 'lease-*',
  authorize(_ctx, _who, data) {
    if (Date.now() < (data as { until: number }).until) return true;
    throw new ActorError('lease_over', 'your lease is over');
  },
});
`);
  const s = await startServer(t, { actors: dir });
  const channel = channelOwnedBy('lease-crash-', 0, 2);
  const x = await clientOnShard(s.url + '/ws', 1, t);
  const until_ = Date.now() + 300;
  t.equal((await x.request({ op: 'subscribe', channel, data: { until: until_ } })).ok, true);
  await until(() => Date.now() > until_ + 50, 'the lease to be over');
  s.crashShard(0);
  const kicked = await x.next((f) => f.op === 'kicked' && f.channel === channel, 15_000);
  t.match(kicked.reason, /lease_over/, 'the reason names the refusal');
  t.equal((await x.request({ op: 'publish', channel, event: 'e', data: 1 })).error?.code, 'not_subscribed', 'the connection is no longer in the channel');
});

t.test('with Redis, a placed actor whose owner shard crashed is taken over at once, not after --lease-ttl', async (t) => {
  // The crashed shard held the channel's lease. A lease left to expire kept every event of the channel
  // waiting for --lease-ttl: publishes timed out, and a client's re-subscribe outlived its ack timeout
  // (rt-actors/client: 10 s, the default lease ttl) and left the channel failed, receiving nothing.
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  // A lease far longer than the request timeout: an event that waits for it is answered 504.
  const s = await startServer(t, { actors: fixtures, redis: redis.url, redisNamespace: ns, leaseTtl: 120, requestTimeout: 20 });
  const channel = channelOwnedBy('stamped-crash-', 0, 2);
  const x = await clientOnShard(s.url + '/ws', 1, t);
  t.equal((await x.request({ op: 'subscribe', channel })).ok, true);
  const owner = (await api(s.http, '/api/channels/' + channel)).body.owner;
  t.match(owner, { placement: 'leased', shard: 0 }, 'shard 0 holds the lease');
  s.crashShard(0);
  await until(async () => (await api(s.http, '/health', undefined, { key: null })).body.workers?.alive === 2, 'shard 0 replaced');
  // A kept-alive API connection may still reach the dying thread while it closes: it refuses the call
  // as never sent (503 "thread shutting down"), or, when it closed with the call forwarded and not yet
  // answered, says the outcome is unknown (the publish may have been delivered). Either is the dying
  // thread's answer, not the channel's: retried, as a backend does. A 504 (the lease left to expire)
  // or any other answer is not.
  const publish = () => api(s.http, '/api/publish', { channel, event: 'after', data: { n: 1 } });
  const fromDyingThread = (r: { status: number; body: any }) => r.status === 503 && r.body?.error?.code === 'unavailable' && /^thread shutting down/.test(r.body.error.message);
  const r = await until(async () => {
    const res = await publish();
    return fromDyingThread(res) ? undefined : res;
  }, 'an answer other than the dying thread\'s');
  t.equal(r.status, 200, `the first publish accepted after the crash: ${JSON.stringify(r.body)}`);
  const got = await x.next((f) => f.op === 'message' && f.event === 'after', 10_000);
  t.same(got.data, { n: 1, stamped: channel }, 'the survivor receives it through the new activation');
});
