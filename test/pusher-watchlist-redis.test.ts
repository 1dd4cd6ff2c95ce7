// Pusher watchlist events across two hosts bridged by a Redis of the test's own: a watcher on host A
// sees a user signed in on host B, once for tabs on both hosts, offline only when the user's last
// connection anywhere closes, and offline when the host holding the user dies (its heartbeat expires).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { metric, redisClient, startHost, startRedis, until } from './helpers/redis.js';
import { APP, connected, pusherClient, subscribed } from './helpers/pusher.js';
import { is, sentinel, signIn } from './helpers/watchlist.js';

t.setTimeout(600_000);

const redis = await startRedis(t);
const ns = `rt-wl-${randomBytes(4).toString('hex')}`;
const args = ['--pusher-app-id', APP.id, '--pusher-key', APP.key, '--pusher-secret', APP.secret];
const A = await startHost(t, redis.url, ns, { workers: 2, args });
const B = await startHost(t, redis.url, ns, { workers: 2, args });

t.test('a user online on host B is online for a watcher on host A: once per user, offline after the last tab anywhere', async (t) => {
  const w = await signIn(t, A.port, 'watcher-a', ['bob', 'cat']);
  t.same(await w.next((e) => e.name === 'offline'), { name: 'offline', user_ids: ['bob', 'cat'] }, 'first report: nobody online');

  // Bob's first tab, on host B.
  const onB = await signIn(t, B.port, 'bob', ['x-1']);
  await onB.next(is('offline', 'x-1'));
  t.same(await w.next((e) => e.name === 'online'), { name: 'online', user_ids: ['bob'] }, 'bob online, seen from host A');
  // His second tab, on host A: no second online.
  const onA = await signIn(t, A.port, 'bob', ['x-2']);
  await onA.next(is('offline', 'x-2'));
  await sentinel(A.port, w, 'watcher-a');
  t.same(w.events, [], 'no second online for a tab on the other host');

  // A watcher signing in on host B now sees bob online in its first report.
  const w2 = await signIn(t, B.port, 'watcher-b', ['bob']);
  t.same(await w2.next((e) => e.name === 'online'), { name: 'online', user_ids: ['bob'] }, "host B's new watcher: bob online");

  // The host-B tab closes: bob is still online on host A.
  onB.p.disconnect();
  await until('host B closed the tab', async () => (await metric(B, 'rt_connections')) === 1);
  const probe = await signIn(t, B.port, 'probe', ['bob']);
  t.same(await probe.next((e) => e.name === 'online'), { name: 'online', user_ids: ['bob'] }, 'after the host-B tab left, bob is still online');
  await sentinel(A.port, w, 'watcher-a');
  t.same(w.events, [], 'no offline while a tab is open on the other host');

  // A backend cannot publish to an online channel through Redis (the Laravel route): no host listens.
  const hidden = `presence-#online ${Buffer.from('bob').toString('base64url')}`;
  t.equal(await redisClient(t, redis.port).publish(hidden, JSON.stringify({ event: 'evil', data: {} })), 0, 'nobody subscribes to the Redis channel a backend would publish an online channel on');
  // Control: an ordinary channel with a subscriber is listened to on that route.
  const listener = pusherClient(t, A.port);
  await connected(listener);
  await subscribed(listener, 'laravel-room');
  t.ok((await redisClient(t, redis.port).publish('laravel-room', JSON.stringify({ event: 'ping', data: {} }))) >= 1, 'an ordinary channel is listened to');

  // The last tab (host A) closes: offline, on both hosts, once.
  onA.p.disconnect();
  t.same(await w.next((e) => e.name === 'offline'), { name: 'offline', user_ids: ['bob'] }, 'offline on host A');
  t.same(await w2.next((e) => e.name === 'offline'), { name: 'offline', user_ids: ['bob'] }, 'offline on host B');
  await sentinel(A.port, w, 'watcher-a');
  t.same(w.events, [], 'exactly one offline');
});

t.test("a dead host's users go offline for watchers on the other host", async (t) => {
  const w = await signIn(t, A.port, 'watcher-c', ['dora']);
  await w.next(is('offline', 'dora'));
  const dora = await signIn(t, B.port, 'dora', ['x-3']);
  await dora.next(is('offline', 'x-3'));
  t.same(await w.next((e) => e.name === 'online'), { name: 'online', user_ids: ['dora'] }, 'dora online on host B');
  await B.crash();
  // Host B is swept once its heartbeat expires (--presence-ttl 2s in these hosts).
  t.same(await w.next((e) => e.name === 'offline', 30_000), { name: 'offline', user_ids: ['dora'] }, 'offline once host B is presumed dead');
});
