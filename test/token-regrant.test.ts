// A fresh token replaces the connection's grants (native `auth`, Socket.IO `token:refresh`): channels the
// old token's `channels` claim granted and the new one does not are left at once, with a `kicked` frame or
// event, and presence tells the other members. Channels the new token still grants, public channels, and
// subscriptions vouched for on their own (a subscribe token) are kept. Before, a refreshed token with fewer
// grants kept every subscription until the connection closed.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { nextEvent, sioConnect } from './helpers/sio.js';
import { randomBytes } from 'node:crypto';
import { dropNamespace, machineRedis, startHost } from './helpers/redis.js';
import { channelOwnedBy, clientOnShard } from './helpers/faults.js';

const token = (sub: string, channels: string[]): string => signJwt({ sub, channels, exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
const bearer = (tok: string) => ({ headers: { Authorization: `Bearer ${tok}` } });

async function publish(http: string, channel: string, data: unknown): Promise<void> {
  const r = await api(http, '/api/publish', { channel, event: 'e', data });
  if (r.status !== 200) throw new Error(`publish to ${channel}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
}

t.test('native: a refreshed token that grants fewer channels ends those subscriptions', async (t) => {
  const s = await startServer(t);
  const all = ['private-a', 'private-b', 'presence-room'];
  const c = await TestClient.connect(`${s.url}/ws?token=${token('u1', all)}`);
  t.teardown(() => c.close());
  const other = await TestClient.connect(`${s.url}/ws?token=${token('u2', ['presence-room'])}`);
  t.teardown(() => other.close());
  t.equal((await other.request({ op: 'subscribe', channel: 'presence-room' })).ok, true, 'another member is in the presence channel');
  for (const channel of [...all, 'news']) t.equal((await c.request({ op: 'subscribe', channel })).ok, true, `subscribed to ${channel}`);
  await other.next((f) => f.op === 'join' && f.member.user_id === 'u1');

  const reply = await c.request({ op: 'auth', token: token('u1', ['private-a']) });
  t.match(reply, { ok: true, user: 'u1' }, 'the fresh token is accepted');
  const kickedB = await c.next((f) => f.op === 'kicked' && f.channel === 'private-b');
  t.match(kickedB.reason, /does not grant private-b/, 'kicked from private-b, saying why');
  const kickedP = await c.next((f) => f.op === 'kicked' && f.channel === 'presence-room');
  t.match(kickedP.reason, /does not grant presence-room/, 'kicked from presence-room');
  const left = await other.next((f) => f.op === 'leave' && f.channel === 'presence-room');
  t.equal(left.member.user_id, 'u1', 'the other member sees u1 leave');

  // What it still may see keeps coming; what it lost does not. The sentinel comes last on a kept channel.
  await publish(s.http, 'private-b', { n: 'lost' });
  await publish(s.http, 'news', { n: 'public' });
  await publish(s.http, 'private-a', { n: 'sentinel' });
  await c.next((f) => f.op === 'message' && f.channel === 'private-a' && f.data.n === 'sentinel');
  t.equal(c.messages('news').length, 1, 'the public channel is kept');
  t.equal(c.messages('private-b').length, 0, 'nothing more from private-b');
  t.equal(c.messages('presence-room').length, 0, 'nothing from presence-room');

  const again = await c.request({ op: 'subscribe', channel: 'private-b' });
  t.match(again, { ok: false, error: { code: 'forbidden' } }, 'subscribing again is refused with the new token');
  t.same((await api(s.http, '/api/channels/presence-room/users')).body, { users: [{ user_id: 'u2' }] }, 'u1 is no longer a presence member');
});

t.test('native: a refresh accepted while a subscribe is still on its way to the owner checks that subscription too', async (t) => {
  const s = await startServer(t);
  const c = await clientOnShard(`${s.url}/ws?token=${token('u1', ['private-a', 'private-race.*'])}`, 0, t);
  t.equal((await c.request({ op: 'subscribe', channel: 'private-a' })).ok, true, 'subscribed to private-a');
  const ch = channelOwnedBy('private-race.', 1, 2);
  // Both frames in one TCP write: shard 0 reads them in one go, so it accepts the refresh while the
  // subscribe waits for shard 1's answer (the owner admitted it with the old grants).
  const order: string[] = [];
  const sock = (c.ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
  sock.cork();
  const sub = c.request({ op: 'subscribe', channel: ch }).then((r) => (order.push('subscribe'), r));
  const auth = c.request({ op: 'auth', token: token('u1', ['private-a']) }).then((r) => (order.push('auth'), r));
  sock.uncork();
  t.match(await auth, { ok: true, user: 'u1' }, 'the fresh token is accepted');
  t.equal((await sub).ok, true, 'the subscribe was admitted with the old token');
  t.same(order, ['auth', 'subscribe'], 'the refresh was accepted before the subscribe was answered (the race this test is about)');
  const kicked = await c.next((f) => f.op === 'kicked' && f.channel === ch);
  t.match(kicked.reason, new RegExp(`does not grant ${ch.replace('.', '\\.')}`), 'then kicked from it, saying why');
  await publish(s.http, ch, { n: 'lost' });
  await publish(s.http, 'private-a', { n: 'sentinel' });
  await c.next((f) => f.op === 'message' && f.channel === 'private-a' && f.data.n === 'sentinel');
  t.equal(c.messages(ch).length, 0, 'nothing from the channel the fresh token does not grant');
});

t.test('native: a refreshed token with the same grants keeps every subscription', async (t) => {
  const s = await startServer(t);
  const grants = ['private-a', 'private-b.*'];
  const c = await TestClient.connect(`${s.url}/ws?token=${token('u1', grants)}`);
  t.teardown(() => c.close());
  for (const channel of ['private-a', 'private-b.7']) t.equal((await c.request({ op: 'subscribe', channel })).ok, true, `subscribed to ${channel}`);
  t.match(await c.request({ op: 'auth', token: token('u1', grants) }), { ok: true }, 'refreshed');
  // A ping after the refresh has gone through the same channel order as any kick would have.
  await publish(s.http, 'private-b.7', { n: 'kept' });
  await publish(s.http, 'private-a', { n: 'sentinel' });
  await c.next((f) => f.op === 'message' && f.channel === 'private-a' && f.data.n === 'sentinel');
  t.equal(c.messages('private-b.7').length, 1, 'a channel granted by a pattern is kept');
  t.equal(c.frames.filter((f) => f.op === 'kicked').length, 0, 'no kick');
});

t.test('native: a refused fresh token changes nothing', async (t) => {
  const s = await startServer(t);
  const c = await TestClient.connect(`${s.url}/ws?token=${token('u1', ['private-a'])}`);
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'private-a' })).ok, true, 'subscribed');
  t.match(await c.request({ op: 'auth', token: token('u2', []) }), { ok: false, error: { code: 'forbidden' } }, 'another user: refused');
  t.match(await c.request({ op: 'auth', token: 'not.a.jwt' }), { ok: false }, 'garbage: refused');
  await publish(s.http, 'private-a', { n: 'sentinel' });
  await c.next((f) => f.op === 'message' && f.channel === 'private-a' && f.data.n === 'sentinel');
  t.equal(c.frames.filter((f) => f.op === 'kicked').length, 0, 'still subscribed, no kick');
});

t.test('Socket.IO: token:refresh with fewer grants kicks those channels and keeps a subscribe-token channel', async (t) => {
  const s = await startServer(t);
  const sock = await sioConnect(t, s.http, { transports: ['websocket'], auth: { token: token('u1', ['private-a', 'private-b']) } });
  const got: [string, unknown][] = [];
  sock.onAny((ev: string, ch: unknown) => got.push([ev, ch]));
  t.same(await sock.emitWithAck('subscribe', { channel: 'private-a' }), { ok: true }, 'private-a with the connection token');
  t.same(await sock.emitWithAck('subscribe', { channel: 'private-b' }), { ok: true }, 'private-b with the connection token');
  t.same(await sock.emitWithAck('subscribe', { channel: 'private-c', auth: bearer(token('u1', ['private-c'])) }), { ok: true }, 'private-c with a token of its own');

  const kicked = nextEvent(sock, 'kicked', (ch: string) => ch === 'private-b');
  t.match(await sock.timeout(5000).emitWithAck('token:refresh', { token: token('u1', ['private-a']) }), { ok: true, user: 'u1' }, 'refreshed');
  const [, info] = await kicked;
  t.match(info.reason, /does not grant private-b/, 'kicked from private-b, saying why');

  await publish(s.http, 'private-b', { n: 'lost' });
  await publish(s.http, 'private-c', { n: 'kept' });
  const sentinel = nextEvent(sock, 'e', (ch: string, d: { n: string }) => ch === 'private-a' && d.n === 'sentinel');
  await publish(s.http, 'private-a', { n: 'sentinel' });
  await sentinel;
  t.same(got.filter(([ev, ch]) => ev === 'e' && ch === 'private-c').length, 1, 'the subscribe-token channel is kept');
  t.same(got.filter(([ev, ch]) => ev === 'e' && ch === 'private-b').length, 0, 'nothing more from private-b');
  t.same(got.filter(([ev, ch]) => ev === 'kicked' && ch !== 'private-b').length, 0, 'no other channel kicked');
});

t.test('Redis bridge: the kick reaches presence on every host', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const A = await startHost(t, redis.url, ns, { workers: 2 });
  const B = await startHost(t, redis.url, ns, { workers: 1 });
  const c = await TestClient.connect(`${A.url}/ws?token=${token('u1', ['private-a', 'presence-room'])}`);
  t.teardown(() => c.close());
  const other = await TestClient.connect(`${B.url}/ws?token=${token('u2', ['presence-room'])}`);
  t.teardown(() => other.close());
  t.equal((await other.request({ op: 'subscribe', channel: 'presence-room' })).ok, true, 'u2 present on host B');
  for (const channel of ['private-a', 'presence-room']) t.equal((await c.request({ op: 'subscribe', channel })).ok, true, `u1 subscribed to ${channel} on host A`);
  await other.next((f) => f.op === 'join' && f.member.user_id === 'u1', 10_000);

  t.match(await c.request({ op: 'auth', token: token('u1', ['private-a']) }), { ok: true }, 'refreshed with fewer grants');
  t.match((await c.next((f) => f.op === 'kicked')).channel, 'presence-room', 'kicked from presence-room');
  const left = await other.next((f) => f.op === 'leave' && f.channel === 'presence-room', 10_000);
  t.equal(left.member.user_id, 'u1', 'host B sees u1 leave');
  await publish(B.http, 'private-a', { n: 'sentinel' });
  await c.next((f) => f.op === 'message' && f.channel === 'private-a' && f.data.n === 'sentinel', 10_000);
  // (next() took the presence-room kick out of the frames seen.)
  t.same(c.frames.filter((f) => f.op === 'kicked'), [], 'private-a kept: no other kick');
});
