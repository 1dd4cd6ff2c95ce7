// Pusher subscription_count across hosts when Redis drops the subscriber connections (CLIENT KILL TYPE
// pubsub, a proxy's idle timeout) but not the command connection. A count write made while the hosts
// were resubscribing published the new total to nobody, and recovery wrote the same count again, which
// publishes nothing when the total did not change: every subscriber, on the subscriber's own host too,
// kept the old subscription_count until the next change. Recovery now publishes the total again.
import t from 'tap';
import { redisCall, startHost, startRedis, until } from './helpers/redis.js';
import { APP, connected, pusherClient, subscribed } from './helpers/pusher.js';

t.setTimeout(120_000);
const R = await startRedis(t);
const args = ['--pusher-apps', JSON.stringify([{ ...APP, subscriptionCountEvents: true }])];
const [A, B] = await Promise.all([startHost(t, R.url, 'rt', { workers: 1, args }), startHost(t, R.url, 'rt', { workers: 1, args })]);

t.test('a count change made while the subscriber connections were down reaches every host', async (t) => {
  const name = 'counted';
  const ann = pusherClient(t, A.port);
  const bob = pusherClient(t, B.port);
  await Promise.all([connected(ann), connected(bob)]);
  const seen = { ann: [] as number[], bob: [] as number[] };
  for (const [who, p] of [['ann', ann], ['bob', bob]] as const) {
    const { channel } = await subscribed(p, name);
    channel.bind('pusher:subscription_count', (e: { subscription_count: number }) => seen[who].push(e.subscription_count));
  }
  await until('ann and bob told of 2 subscribers', () => seen.ann.at(-1) === 2 && seen.bob.at(-1) === 2);

  const killed = Number(await redisCall(R.port, 'CLIENT', 'KILL', 'TYPE', 'pubsub'));
  t.ok(killed >= 2, `Redis dropped the hosts' subscriber connections (${killed})`);
  // Subscribed at once: the hosts reconnect their subscriber connections after a backoff of 200 ms or more.
  const eve = pusherClient(t, A.port);
  await connected(eve);
  await subscribed(eve, name);

  await until(`ann and bob told of 3 subscribers (ann: ${seen.ann}, bob: ${seen.bob})`, () => seen.ann.at(-1) === 3 && seen.bob.at(-1) === 3, 10000);
  t.equal(seen.ann.at(-1), 3, 'ann, on the new subscriber\'s host, has the new count');
  t.equal(seen.bob.at(-1), 3, 'bob, on the other host, has the new count');
});
