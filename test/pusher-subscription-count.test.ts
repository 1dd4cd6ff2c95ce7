// Pusher subscription_count events on one host: real pusher-js clients see `pusher:subscription_count`
// with the channel's subscriber count across both shards and every transport; presence channels and
// apps without the option get none; a burst of joins is coalesced; a bad option fails the start.
import t from 'tap';
import { createServer } from 'rt-actors';
import { api, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { sioConnect } from './helpers/sio.js';
import { until } from './helpers/redis.js';
import { APP, APP_B, connected, nextOn, pusherClient, pusherConnectionsPerShard, pusherOptions, RawPusher, sdk, subscribed, subscriptionCounts } from './helpers/pusher.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

const s = await startServer(t, { workers: 2, pusherApps: [{ ...APP, subscriptionCountEvents: true }, APP_B] });

/** Waits until the last count received is `n` (later ones may follow: the caller checks what it needs). */
async function lastIs(t: { pass(msg: string): void }, seen: number[], n: number, what: string): Promise<void> {
  await until(what, () => seen.at(-1) === n, 10_000);
  t.pass(what);
}

/** A raw Pusher connection subscribed to a public channel of `key`'s app. */
async function rawSubscriber(key: string, channel: string): Promise<RawPusher> {
  const raw = await RawPusher.open(t, `${s.url}/app/${key}?protocol=7`);
  await raw.event('pusher:connection_established');
  raw.send({ event: 'pusher:subscribe', data: { channel } });
  await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === channel);
  return raw;
}

const countFrames = (raw: RawPusher, channel: string) => raw.frames.filter((f) => f.event === 'pusher_internal:subscription_count' && f.channel === channel);

t.test('pusher-js sees 1, then 2 when a client on the other shard joins, then 1 when it leaves', async (t) => {
  const ch = 'private-count-room';
  const a = pusherClient(t, s.port);
  await connected(a);
  const sa = a.subscribe(ch);
  const aSeen = subscriptionCounts(sa);
  await lastIs(t, aSeen, 1, 'the first subscriber is told 1');
  t.equal((sa as any).subscriptionCount, 1, 'pusher-js sets channel.subscriptionCount');

  const b = pusherClient(t, s.port);
  await connected(b);
  const sb = b.subscribe(ch);
  const bSeen = subscriptionCounts(sb);
  await lastIs(t, aSeen, 2, 'the first subscriber is told 2');
  await lastIs(t, bSeen, 2, 'the joiner is told 2');
  const per = await until('both connections in /metrics', async () => {
    const p = await pusherConnectionsPerShard(s.http);
    return p.reduce((x, y) => x + y, 0) === 2 ? p : undefined;
  });
  t.equal(per.filter((n) => n > 0).length, 2, `the two clients are on different shards (${JSON.stringify(per)})`);

  b.disconnect();
  await lastIs(t, aSeen, 1, 'the remaining subscriber is told 1 when the other leaves');
  t.notOk(aSeen.some((n) => n < 1 || n > 2), `no other value was announced (${aSeen.join(', ')})`);
  const info = await (await sdk(s.port).get({ path: `/channels/${ch}`, params: { info: 'subscription_count' } })).json();
  t.equal(info.subscription_count, 1, 'the HTTP API reports the same number');
});

t.test('native and Socket.IO subscribers count too; only Pusher clients are told', async (t) => {
  const ch = 'count-mixed';
  const p = pusherClient(t, s.port);
  await connected(p);
  const seen = subscriptionCounts(p.subscribe(ch));
  await lastIs(t, seen, 1, 'alone: 1');

  const nat = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => nat.close());
  await nat.request({ op: 'subscribe', channel: ch });
  await lastIs(t, seen, 2, 'a native subscriber counts');

  const sio = await sioConnect(t, s.http, { transports: ['websocket'] });
  const sioEvents: string[] = [];
  sio.onAny((event: string) => sioEvents.push(event));
  await new Promise((resolve) => sio.emit('subscribe', { channel: ch }, resolve));
  await lastIs(t, seen, 3, 'a Socket.IO subscriber counts');

  // A sentinel published after the counts: once it arrived, nothing else can be on its way.
  const natSentinel = nat.next((f) => f.op === 'message' && f.event === 'sentinel');
  const sioSentinel = new Promise((resolve) => sio.on('sentinel', resolve));
  await api(s.http, '/api/publish', { channel: ch, event: 'sentinel', data: {} });
  await Promise.all([natSentinel, sioSentinel]);
  t.notOk(nat.frames.some((f) => JSON.stringify(f).includes('subscription_count')), 'the native client got no count');
  t.same(sioEvents, ['sentinel'], 'the Socket.IO client got only the sentinel');
});

t.test('presence channels and apps without the option get no count', async (t) => {
  // Presence: two members join, the first sees member_added and then a sentinel, never a count.
  const backend = sdk(s.port);
  const ann = pusherClient(t, s.port, { member: { user_id: 'ann' } });
  const bob = pusherClient(t, s.port, { member: { user_id: 'bob' } });
  await Promise.all([connected(ann), connected(bob)]);
  const pa = ann.subscribe('presence-count-room');
  const annSeen = subscriptionCounts(pa);
  await nextOn(pa, 'pusher:subscription_succeeded');
  const added = nextOn(pa, 'pusher:member_added');
  await subscribed(bob, 'presence-count-room');
  await added;
  const sentinel = nextOn(pa, 'sentinel');
  await backend.trigger('presence-count-room', 'sentinel', {});
  await sentinel;
  t.same(annSeen, [], 'no subscription_count on a presence channel');

  // App B has no subscriptionCountEvents: two subscribers, then a sentinel, and no count frame.
  const first = await rawSubscriber(APP_B.key, 'count-b');
  await rawSubscriber(APP_B.key, 'count-b');
  const got = first.next((f) => f.event === 'sentinel');
  await sdk(s.port, APP_B).trigger('count-b', 'sentinel', {});
  await got;
  t.same(countFrames(first, 'count-b'), [], 'no subscription_count for an app without the option');
});

t.test('a burst of joins is coalesced; the last event carries the final count', async (t) => {
  const ch = 'count-burst';
  const N = 12;
  // The Inbox consumes what a wait matched: the order of arrival is recorded beside it.
  const watcher = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  const order: string[] = [];
  watcher.ws.on('message', (d) => order.push(JSON.parse(d.toString()).event));
  await watcher.event('pusher:connection_established');
  watcher.send({ event: 'pusher:subscribe', data: { channel: ch } });
  const first = await watcher.next((f) => f.event === 'pusher_internal:subscription_count' && f.channel === ch);
  t.same(order.filter((e) => e !== 'pusher:connection_established'), ['pusher_internal:subscription_succeeded', 'pusher_internal:subscription_count'], 'the joiner gets its count after subscription_succeeded');
  t.same(JSON.parse(first.data), { subscription_count: 1 }, 'alone on the channel: 1, at once');
  const before = countFrames(watcher, ch).length;
  await Promise.all(Array.from({ length: N }, () => rawSubscriber(APP.key, ch)));
  await until(`the watcher is told ${N + 1}`, () => JSON.parse(countFrames(watcher, ch).at(-1)!.data).subscription_count === N + 1, 10_000);
  const during = countFrames(watcher, ch).slice(before);
  t.ok(during.length < N, `${N} joins gave ${during.length} events`);
  t.same(JSON.parse(during.at(-1)!.data), { subscription_count: N + 1 }, 'data is a JSON string holding the final count');
});

t.test("--pusher-subscription-count-events turns it on for the flags' app", async (t) => {
  const f = await startServer(t, { workers: 1, ...pusherOptions({ pusherSubscriptionCountEvents: true }) });
  const p = pusherClient(t, f.port);
  await connected(p);
  const seen = subscriptionCounts(p.subscribe('count-flag'));
  await lastIs(t, seen, 1, 'the flags app announces counts');
});

t.test('a subscriptionCountEvents that is not a boolean fails the start, naming the key', async (t) => {
  for (const bad of ['true', 1, null]) {
    await t.rejects(
      createServer({ port: 0, host: '127.0.0.1', workers: 1, logLevel: 'error', env: {}, pusherApps: [{ ...APP, subscriptionCountEvents: bad }] } as never),
      /pusherApps\[0\]\.subscriptionCountEvents must be true or false/,
      `subscriptionCountEvents: ${JSON.stringify(bad)} is refused`,
    );
  }
});
