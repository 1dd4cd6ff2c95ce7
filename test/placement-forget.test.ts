// With Redis, custom actors' channels leave no bookkeeping behind once nobody uses them: a host that
// learned another host holds a channel's lease, or took Laravel broadcasts for it, forgets the
// channel after its subscribers are gone (rt_redis_tracked_channels back to 0). Before, both stayed
// for the life of the process: channels created once (one per order, per auction) grew the heap.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { signJwt } from 'rt-actors';
import { JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { metric, redisClient, startHost, startRedis, until } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/cluster-actors', import.meta.url));
const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

t.test('a host forgets the lease owners and broadcast claims of channels nobody uses any more', async (t) => {
  const redis = await startRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  const prefix = 'laravel_database_';
  const hostArgs = (id: string) => ({ args: ['--actors', actors, '--lease-ttl', '2s', '--host-id', id, '--redis-prefix', prefix] });
  const h1 = await startHost(t, redis.url, ns, hostArgs('h1'));
  const h2 = await startHost(t, redis.url, ns, hostArgs('h2'));
  const r = redisClient(t, redis.port);
  const a = await TestClient.connect(`${h1.url}/ws?token=${token('a')}`);
  const b = await TestClient.connect(`${h2.url}/ws?token=${token('b')}`);
  t.teardown(() => {
    a.close();
    b.close();
  });

  const channels = Array.from({ length: 12 }, (_, i) => `auction-forget-${i}`);
  for (const ch of channels) {
    // h1 activates the actor (takes the lease); h2 learns h1 holds it.
    t.equal((await a.request({ op: 'subscribe', channel: ch }, 30000)).ok, true, `h1 joins ${ch}`);
    t.equal((await b.request({ op: 'subscribe', channel: ch }, 30000)).ok, true, `h2 joins ${ch}`);
    // A Laravel broadcast reaches both hosts' Redis subscriptions: each keeps a claim for it.
    await r.publish(prefix + ch, JSON.stringify({ event: 'Opened', data: { ch }, socket: null }));
    await a.waitForMessages(ch, 1);
    await b.waitForMessages(ch, 1);
  }
  const inUse = await until('h2 tracks the channels it uses', async () => ((await metric(h2, 'rt_redis_tracked_channels')) >= channels.length ? true : undefined));
  t.ok(inUse, 'the gauge counts the channels in use');

  for (const ch of channels) {
    t.equal((await a.request({ op: 'unsubscribe', channel: ch })).ok, true);
    t.equal((await b.request({ op: 'unsubscribe', channel: ch })).ok, true);
  }
  // Claims live 10 s and the sweep runs every 5 s: well within the deadline, unless nothing forgets them.
  for (const [name, h] of [['h1', h1], ['h2', h2]] as const) {
    await until(`${name} forgets the unused channels`, async () => ((await metric(h, 'rt_redis_tracked_channels')) === 0 ? true : undefined), 40000, 250);
    t.pass(`${name} keeps nothing for the channels nobody uses`);
  }
});
