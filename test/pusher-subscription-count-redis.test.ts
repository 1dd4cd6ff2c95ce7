// Pusher subscription_count events across hosts bridged by Redis: every host's subscribers are told the
// cluster-wide count — the number GET /apps/<id>/channels/<name> reports — including when a host dies.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { dropNamespace, machineRedis, startHost, until } from './helpers/redis.js';
import { APP, connected, pusherClient, sdk, subscriptionCounts } from './helpers/pusher.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const redis = await machineRedis(t);
t.teardown(() => dropNamespace(redis.port, ns));
// room-* channels are served by a custom actor (test/fixtures/pusher-actors): one activation cluster-wide.
const ACTORS = new URL('./fixtures/pusher-actors', import.meta.url).pathname;
const args = ['--pusher-app-id', APP.id, '--pusher-key', APP.key, '--pusher-secret', APP.secret, '--pusher-subscription-count-events', '--actors', ACTORS];
const A = await startHost(t, redis.url, ns, { workers: 2, args });
const B = await startHost(t, redis.url, ns, { workers: 1, args });

async function lastIs(t: { pass(msg: string): void }, seen: number[], n: number, what: string): Promise<void> {
  await until(what, () => seen.at(-1) === n, 15_000);
  t.pass(what);
}

async function subscriptionCount(port: number, channel: string): Promise<number> {
  const r = await (await sdk(port).get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } })).json();
  return r.subscription_count ?? 0;
}

t.test('subscribers on two hosts see the cluster-wide count', async (t) => {
  const ch = 'count-cluster';
  const a1 = pusherClient(t, A.port);
  const a2 = pusherClient(t, A.port);
  const b1 = pusherClient(t, B.port);
  await Promise.all([connected(a1), connected(a2), connected(b1)]);
  const a1Seen = subscriptionCounts(a1.subscribe(ch));
  await lastIs(t, a1Seen, 1, 'alone on host A: 1');
  const b1Seen = subscriptionCounts(b1.subscribe(ch));
  await lastIs(t, a1Seen, 2, 'host A is told 2 when a client of host B joins');
  await lastIs(t, b1Seen, 2, 'the joiner on host B is told 2');
  const a2Seen = subscriptionCounts(a2.subscribe(ch));
  await lastIs(t, b1Seen, 3, 'host B is told 3 when a second client of host A joins');
  await lastIs(t, a2Seen, 3, 'the joiner on host A is told 3');
  t.equal(await subscriptionCount(B.port, ch), 3, 'the HTTP API on host B reports the same 3');

  b1.disconnect();
  await lastIs(t, a1Seen, 2, 'host A is told 2 when host B’s client leaves');
  await lastIs(t, a2Seen, 2, 'both of its clients');
  t.equal(await subscriptionCount(A.port, ch), 2, 'the HTTP API on host A reports 2');
});

t.test('a host that dies stops counting once it is swept, and the others are told', async (t) => {
  const ch = 'count-dead-host';
  const C = await startHost(t, redis.url, ns, { workers: 1, args });
  const a = pusherClient(t, A.port);
  const c = pusherClient(t, C.port);
  await Promise.all([connected(a), connected(c)]);
  const aSeen = subscriptionCounts(a.subscribe(ch));
  await lastIs(t, aSeen, 1, 'alone: 1');
  c.subscribe(ch);
  await lastIs(t, aSeen, 2, 'with host C’s client: 2');
  // kill -9: nothing is said by host C; the sweep after its heartbeat expires (--presence-ttl 2s) is.
  await C.crash();
  await lastIs(t, aSeen, 1, 'host A is told 1 after host C is swept');
  t.equal(await subscriptionCount(A.port, ch), 1, 'the HTTP API agrees');
});

t.test('each host coalesces a burst of joins on another host', async (t) => {
  const ch = 'count-burst-cluster';
  const N = 8;
  const watcher = pusherClient(t, A.port);
  await connected(watcher);
  const seen = subscriptionCounts(watcher.subscribe(ch));
  await lastIs(t, seen, 1, 'alone: 1');
  const joiners = Array.from({ length: N }, () => pusherClient(t, B.port));
  await Promise.all(joiners.map((p) => connected(p)));
  const before = seen.length;
  for (const p of joiners) p.subscribe(ch);
  await lastIs(t, seen, N + 1, `host A is told ${N + 1}`);
  const during = seen.slice(before);
  t.ok(during.length < N, `${N} joins on host B gave ${during.length} events on host A (${during.join(', ')})`);
  t.equal(await subscriptionCount(A.port, ch), N + 1, 'the HTTP API agrees');
});

t.test('a channel served by a placed custom actor counts its subscribers on every host', async (t) => {
  const ch = 'room-count';
  const a = pusherClient(t, A.port);
  const b = pusherClient(t, B.port);
  await Promise.all([connected(a), connected(b)]);
  const aSeen = subscriptionCounts(a.subscribe(ch));
  await lastIs(t, aSeen, 1, 'alone: 1');
  const bSeen = subscriptionCounts(b.subscribe(ch));
  await lastIs(t, aSeen, 2, 'host A is told 2');
  await lastIs(t, bSeen, 2, 'host B is told 2');
  b.disconnect();
  await lastIs(t, aSeen, 1, 'host A is told 1 when host B’s client leaves');
});
