// Redis bridge: several rt-actors server processes sharing channels through the machine's Redis (or one
// this test starts when 6379 does not answer). Each run uses a namespace of its own and deletes it.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { dropNamespace, machineRedis, metric, redisClient, startHost, until } from './helpers/redis.js';

const token = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { secret: JWT_SECRET });
const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const prefix = `${ns}-laravel_database_`;

const redis = await machineRedis(t);
t.teardown(() => dropNamespace(redis.port, ns));
// Host A runs two shards (channels owned by different threads), host B one.
const args = ['--redis-prefix', prefix, '--history-patterns', 'tiny-*=3/1h,brief-*=100/1s'];
const A = await startHost(t, redis.url, ns, { workers: 2, args });
const B = await startHost(t, redis.url, ns, { workers: 1, args });

async function connect(url: string, tok?: string): Promise<TestClient> {
  const c = await TestClient.connect(url + '/ws' + (tok ? `?token=${tok}` : ''));
  t.teardown(() => c.close());
  return c;
}

const seq = (frames: Frame[]) => frames.map((f) => `${f.offset}:${f.event}:${JSON.stringify(f.data)}`);

t.test('publications reach subscribers on every host, in one order with the same offsets', async (t) => {
  const channels = ['orders', 'alerts', 'room-1', 'room-2'];
  const clients = [await connect(A.url), await connect(A.url), await connect(A.url), await connect(B.url), await connect(B.url)];
  t.same(new Set(clients.slice(0, 3).map((c) => c.welcome.socket_id.split('.')[0])).size, 2, 'host A clients on both of its shards');
  for (const c of clients) for (const ch of channels) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true);

  // Both hosts publish at once, on every channel: Redis decides one order, every host must show it.
  const N = 15;
  const from = (host: typeof A, name: string) =>
    (async () => {
      for (let i = 0; i < N; i++) {
        for (const ch of channels) {
          const r = await api(host.http, '/api/publish', { channel: ch, event: 'tick', data: { from: name, i } });
          if (r.status !== 200) throw new Error(`publish via ${name}: ${r.status} ${JSON.stringify(r.body)}`);
        }
      }
    })();
  await Promise.all([from(A, 'A'), from(B, 'B')]);
  for (const ch of channels) {
    const reference = seq(await clients[0]!.waitForMessages(ch, 2 * N));
    for (const [i, c] of clients.entries()) {
      const got = await c.waitForMessages(ch, 2 * N);
      t.same(seq(got), reference, `${ch}: client ${i} saw the same sequence as client 0`);
      t.same(got.map((f) => f.offset), Array.from({ length: 2 * N }, (_, k) => k + 1), `${ch}: client ${i} offsets 1..${2 * N} without gaps`);
      for (const src of ['A', 'B']) {
        const mine = got.filter((f) => f.data.from === src).map((f) => f.data.i);
        t.same(mine, [...Array(N).keys()], `${ch}: client ${i} kept host ${src}'s publish order`);
      }
    }
  }

  // socket_id given to one host excludes a socket living on the other.
  const onB = clients[3]!;
  await api(A.http, '/api/publish', { channel: 'orders', event: 'quiet', data: 1, socket_id: onB.welcome.socket_id });
  await api(A.http, '/api/publish', { channel: 'orders', event: 'marker', data: 2 });
  await onB.next((f) => f.event === 'marker');
  await clients[4]!.next((f) => f.event === 'quiet');
  t.equal(onB.messages('orders').filter((f) => f.event === 'quiet').length, 0, 'excluded socket on host B skipped');

  // A client publish on host A (private channel) reaches a subscriber on host B.
  const pa = await connect(A.url, token('1', { channels: ['private-*'] }));
  const pb = await connect(B.url, token('2', { channels: ['private-*'] }));
  await pa.request({ op: 'subscribe', channel: 'private-chat' });
  await pb.request({ op: 'subscribe', channel: 'private-chat' });
  const pub = await pa.request({ op: 'publish', channel: 'private-chat', event: 'say', data: { text: 'hi' } });
  t.equal(pub.offset, 1, 'client publish got its offset from Redis');
  const got = await pb.next((f) => f.op === 'message' && f.channel === 'private-chat');
  t.same([got.event, got.data, got.offset], ['say', { text: 'hi' }, 1]);
});

t.test("Laravel's Redis broadcaster reaches every host once, socket excluded, bad payloads ignored", async (t) => {
  const r = redisClient(t, redis.port);
  const ch = 'private-orders.7';
  const tok = token('5', { channels: ['private-orders.*'] });
  const ca = await connect(A.url, tok);
  const cb = await connect(B.url, tok);
  const cb2 = await connect(B.url, tok);
  for (const c of [ca, cb, cb2]) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true);
  const laravel = (payload: unknown) => r.publish(prefix + ch, typeof payload === 'string' ? payload : JSON.stringify(payload));

  t.equal(await laravel({ event: 'OrderShipped', data: { id: 7 }, socket: null }), 2, 'one Redis subscription per host');
  const [a1] = await ca.waitForMessages(ch, 1);
  const [b1] = await cb.waitForMessages(ch, 1);
  t.same([a1!.event, a1!.data, a1!.offset], ['OrderShipped', { id: 7 }, 1]);
  t.equal(b1!.offset, a1!.offset, 'same offset on both hosts');

  // Laravel's `socket` (X-Socket-ID) excludes that connection, on whichever host it lives.
  await laravel({ event: 'Whisper', data: { n: 1 }, socket: cb.welcome.socket_id });
  // The last one is well formed but over --max-payload (64 KiB), which the HTTP API would refuse too.
  for (const bad of ['not json', '[1,2]', JSON.stringify({ data: 1 }), JSON.stringify({ event: 5, data: 1 }), JSON.stringify({ event: '', data: 1 }), JSON.stringify({ event: 'Big', data: 'x'.repeat(70_000) })]) await laravel(bad);
  // The same payload twice is two broadcasts, not one seen by two hosts.
  await laravel({ event: 'Ping', data: {} });
  await laravel({ event: 'Ping', data: {} });
  await laravel({ event: 'Done', data: null });
  await ca.waitForMessages(ch, 5);
  await cb2.waitForMessages(ch, 5);
  await cb.waitForMessages(ch, 4);
  t.same(ca.messages(ch).map((f) => f.event), ['OrderShipped', 'Whisper', 'Ping', 'Ping', 'Done'], 'host A: each message once, in order');
  t.same(cb2.messages(ch).map((f) => f.event), ['OrderShipped', 'Whisper', 'Ping', 'Ping', 'Done'], 'host B: each message once, in order');
  t.same(cb.messages(ch).map((f) => f.event), ['OrderShipped', 'Ping', 'Ping', 'Done'], 'the socket Laravel named did not get its own message');
  t.same(ca.messages(ch).map((f) => f.offset), [1, 2, 3, 4, 5], 'one cluster-wide offset each');
  t.same(cb2.messages(ch).map((f) => f.offset), [1, 2, 3, 4, 5]);
  // Gauges reach /metrics through shared memory a few times a second: wait for them, do not race them.
  for (const [name, h] of [['A', A], ['B', B]] as const) {
    await until(`host ${name} to count the malformed payloads`, async () => (await metric(h, 'rt_redis_invalid_messages_total')) >= 6);
    t.pass(`malformed payloads counted on host ${name}`);
  }
  for (const h of [A, B]) t.equal((await api(h.http, '/health', undefined, { key: null })).body.status, 'ok', 'hosts healthy after bad input');
});

t.test('the same Laravel broadcast after the channel was left and joined again is a new message (one host)', async (t) => {
  const r = redisClient(t, redis.port);
  const ch = 'refresh-board';
  const laravel = () => r.publish(prefix + ch, JSON.stringify({ event: 'Refresh', data: { socket: null }, socket: null }));
  const first = await connect(B.url);
  t.equal((await first.request({ op: 'subscribe', channel: ch })).ok, true);
  await laravel();
  await first.waitForMessages(ch, 1);
  // The only subscriber leaves (the host unsubscribes from the channel in Redis) and comes back.
  t.equal((await first.request({ op: 'unsubscribe', channel: ch })).ok, true);
  const again = await connect(B.url);
  await until('the host has left the channel in Redis', async () => ((await r.pubsub('NUMSUB', prefix + ch)) as [string, number])[1] === 0 || undefined, 10000);
  t.equal((await again.request({ op: 'subscribe', channel: ch })).ok, true);
  await until('the host has joined the channel in Redis again', async () => ((await r.pubsub('NUMSUB', prefix + ch)) as [string, number])[1] === 1 || undefined, 10000);
  await laravel();
  await r.publish(prefix + ch, JSON.stringify({ event: 'Sentinel', data: null }));
  const got = await again.waitForMessages(ch, 2, 10000);
  t.same(got.map((f) => f.event), ['Refresh', 'Sentinel'], 'the repeated broadcast was delivered, before the sentinel');
});

t.test('Laravel -> Redis -> laravel-echo clients on two hosts (the whole Laravel story)', async (t) => {
  const echo = (h: typeof A, user: string) => {
    const e = new Echo({ broadcaster: 'socket.io', host: h.http, client: io, forceNew: true, reconnection: false, auth: { headers: { Authorization: `Bearer ${token(user, { channels: ['private-*'] })}` } } } as never) as Echo<'socket.io'>;
    t.teardown(() => e.disconnect());
    return e;
  };
  const ann = echo(A, '11');
  const bob = echo(B, '12');
  const got = (e: Echo<'socket.io'>) => new Promise((resolve) => e.private('shipments.9').listen('ShipmentUpdated', resolve));
  const annGot = got(ann);
  const bobGot = got(bob);
  // Echo (socket.io) has no "subscribed" callback: wait until both hosts' subscriptions count.
  await until('both Echo clients to be subscribed', async () => (await api(B.http, '/api/channels/private-shipments.9')).body.subscribers === 2);
  // What Laravel's RedisBroadcaster sends for `broadcast(new ShipmentUpdated($s))`.
  await redisClient(t, redis.port).publish(prefix + 'private-shipments.9', JSON.stringify({ event: 'App\\Events\\ShipmentUpdated', data: { id: 9, status: 'out' }, socket: null }));
  t.same(await annGot, { id: 9, status: 'out' }, 'Echo on host A');
  t.same(await bobGot, { id: 9, status: 'out' }, 'Echo on host B');
});

t.test('a client resumes on another host from its last offset', async (t) => {
  const c1 = await connect(A.url);
  const sub = await c1.request({ op: 'subscribe', channel: 'feed' });
  for (let i = 1; i <= 3; i++) await api(A.http, '/api/publish', { channel: 'feed', event: 'e', data: i });
  const seen = await c1.waitForMessages('feed', 3);
  const last = { offset: seen[2]!.offset, epoch: sub.epoch };
  c1.close();
  for (let i = 4; i <= 7; i++) await api(B.http, '/api/publish', { channel: 'feed', event: 'e', data: i });
  const c2 = await connect(B.url);
  const resumed = await c2.request({ op: 'subscribe', channel: 'feed', since: last });
  t.equal(resumed.epoch, sub.epoch, 'the channel has one epoch on every host');
  t.equal(resumed.recovered, true);
  t.same(resumed.publications.map((p: Frame) => p.data), [4, 5, 6, 7], 'missed messages come back from the Redis stream');
  t.same(resumed.publications.map((p: Frame) => p.offset), [4, 5, 6, 7]);
  await api(A.http, '/api/publish', { channel: 'feed', event: 'e', data: 8 });
  const live = await c2.next((f) => f.op === 'message');
  t.same([live.data, live.offset], [8, 8], 'live messages continue after the resumed ones');
  const hist = await c2.request({ op: 'history', channel: 'feed', limit: 2 });
  t.same(hist.publications.map((p: Frame) => p.data), [7, 8], 'history op on host B');
  const lost = await c2.request({ op: 'history', channel: 'feed', since: { offset: 1, epoch: 'not-this-one' } });
  t.equal(lost.recovered, false, 'an unknown epoch is not recoverable');
});

t.test('the HTTP API answers for the whole cluster, on every host', async (t) => {
  const a = await connect(A.url, token('42'));
  const b = await connect(B.url, token('42'));
  const other = await connect(B.url, token('43'));
  for (const c of [a, b, other]) await c.request({ op: 'subscribe', channel: 'census' });
  const r = redisClient(t, redis.port);
  const numsub = async () => Number(((await r.pubsub('NUMSUB', `${ns}:{census}:c`)) as [string, number])[1]);
  t.equal(await numsub(), 2, 'one Redis subscription per host, however many subscribers it has');
  for (const h of [A, B]) {
    const info = await api(h.http, '/api/channels/census');
    const { owner, ...counts } = info.body;
    t.same(counts, { name: 'census', subscribers: 3, offset: 0 }, 'counts from both hosts');
    t.equal(owner.placement, 'per-host', 'a plain channel is relayed by every host');
    const list = await api(h.http, '/api/channels?prefix=cens');
    t.same(list.body.channels, [{ name: 'census', subscribers: 3, offset: 0 }]);
  }
  other.close();
  await until('the count to drop', async () => (await api(A.http, '/api/channels/census')).body.subscribers === 2);
  t.pass('an unsubscribe on host B is seen from host A');

  // A message to a user reaches its connections on both hosts, whichever host the backend called.
  t.equal((await api(A.http, '/api/publish', { user: '42', event: 'notify', data: { n: 1 } })).status, 200);
  t.same((await a.next((f) => f.event === 'notify')).data, { n: 1 });
  t.same((await b.next((f) => f.event === 'notify')).data, { n: 1 });
  // Disconnecting a user through host B closes its connection on host A too.
  t.equal((await api(B.http, '/api/users/42/disconnect', {})).status, 200);
  t.equal((await a.waitClose()).code, 4011);
  t.equal((await b.waitClose()).code, 4011);
  await until('the hosts to drop their Redis subscriptions', async () => (await numsub()) === 0);
  t.pass('a host unsubscribes in Redis when its last subscriber leaves');
});

t.test('history is bounded per channel pattern (size and age)', async (t) => {
  const c = await connect(B.url);
  const sub = await c.request({ op: 'subscribe', channel: 'tiny-1' });
  for (let i = 1; i <= 6; i++) await api(A.http, '/api/publish', { channel: 'tiny-1', event: 'e', data: i });
  await c.waitForMessages('tiny-1', 6);
  const c2 = await connect(A.url);
  const far = await c2.request({ op: 'subscribe', channel: 'tiny-1', since: { offset: 1, epoch: sub.epoch } });
  t.equal(far.recovered, false, "offset 2 is beyond the 3 publications 'tiny-*=3/1h' keeps");
  await c2.request({ op: 'unsubscribe', channel: 'tiny-1' });
  const near = await c2.request({ op: 'subscribe', channel: 'tiny-1', since: { offset: 3, epoch: sub.epoch } });
  t.same(near.publications.map((p: Frame) => p.data), [4, 5, 6], 'the last 3 are kept');
  const hist = await c2.request({ op: 'history', channel: 'tiny-1', limit: 10 });
  t.same(hist.publications.map((p: Frame) => p.data), [4, 5, 6]);

  const d = await connect(A.url);
  const s2 = await d.request({ op: 'subscribe', channel: 'brief-1' });
  await api(B.http, '/api/publish', { channel: 'brief-1', event: 'e', data: 1 });
  await d.waitForMessages('brief-1', 1);
  await new Promise((r) => setTimeout(r, 1200)); // past the pattern's 1 s ttl
  const e = await connect(B.url);
  const old = await e.request({ op: 'subscribe', channel: 'brief-1', since: { offset: 0, epoch: s2.epoch } });
  t.equal(old.recovered, false, "a publication older than 'brief-*=100/1s' allows is gone");
});

t.test('presence across hosts: one join per user, and a killed host’s members leave', async (t) => {
  const K = await startHost(t, redis.url, ns, { workers: 1, args });
  const tok = (u: string) => token(u, { channels: ['presence-*'], user_info: { name: `user ${u}` } });
  const ch = 'presence-lobby';
  const watcher = await connect(A.url, tok('w'));
  const sub = await watcher.request({ op: 'subscribe', channel: ch });
  t.same(sub.members, [{ user_id: 'w', user_info: { name: 'user w' } }]);
  const a42 = await connect(A.url, tok('142'));
  const k42 = await connect(K.url, tok('142'));
  const k7 = await connect(K.url, tok('7'));
  const b9 = await connect(B.url, tok('9'));
  for (const c of [a42, k42, k7, b9]) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true);
  for (const u of ['142', '7', '9']) {
    const j = await watcher.next((f) => f.op === 'join' && f.member.user_id === u);
    t.same(j.member, { user_id: u, user_info: { name: `user ${u}` } }, `join of ${u} seen on host A`);
  }
  // Presence events ride the channel's subscription, so a publication after them arrives after them.
  await api(B.http, '/api/publish', { channel: ch, event: 'marker', data: 1 });
  await watcher.next((f) => f.event === 'marker');
  t.equal(watcher.frames.filter((f) => f.op === 'join').length, 0, 'exactly one join per user (142 has tabs on two hosts)');
  t.equal(k7.frames.filter((f) => f.op === 'join' && f.member.user_id === '7').length, 0, 'a member does not get its own join');
  const users = await api(B.http, `/api/channels/${ch}/users`);
  t.same(users.body.users.map((u: { user_id: string }) => u.user_id).sort(), ['142', '7', '9', 'w']);
  const info = await api(B.http, `/api/channels/${ch}`);
  t.same([info.body.subscribers, info.body.presence], [5, 4]);

  await K.crash();
  const leave = await watcher.next((f) => f.op === 'leave', 20000);
  t.same(leave.member, { user_id: '7', user_info: { name: 'user 7' } }, "the dead host's only-there member left");
  await api(B.http, '/api/publish', { channel: ch, event: 'marker', data: 2 });
  await watcher.next((f) => f.event === 'marker');
  t.equal(watcher.frames.filter((f) => f.op === 'leave').length, 0, 'user 142 stays: it still has a tab on host A');
  const after = await api(A.http, `/api/channels/${ch}/users`);
  t.same(after.body.users.map((u: { user_id: string }) => u.user_id).sort(), ['142', '9', 'w']);
  const counts = await api(A.http, `/api/channels/${ch}`);
  t.same([counts.body.subscribers, counts.body.presence], [3, 3], "the dead host's subscribers no longer count");

  // A closed connection leaves at once, on every host.
  b9.close();
  const left9 = await watcher.next((f) => f.op === 'leave' && f.member.user_id === '9');
  t.equal(left9.member.user_id, '9');
});

t.test('a second host with a wrong --redis fails to start with a clear error', async (t) => {
  await t.rejects(startHost(t, 'redis://127.0.0.1:1', ns), /host exited \(2\):.*rt-actors: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/s);
});
