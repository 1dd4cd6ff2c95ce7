// The Pusher protocol gateway with the real pusher-js client (Node build), channel auth signed by the
// official `pusher` server SDK: connection, public/private/presence channels, client events, errors,
// and one presence room shared with socket.io-client and a native WebSocket client.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { nextEvent, sioConnect } from './helpers/sio.js';
import { APP, connected, nextOn, nextWithMeta, pusherClient, pusherOptions, RawPusher, sdk, subscribed } from './helpers/pusher.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

// One server for the subtests that need nothing special (each uses channels of its own).
const shared = await startServer(t, pusherOptions());

const token = (sub: string, name: string) =>
  signJwt({ sub, user_info: { name }, channels: ['private-*', 'presence-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

t.test('without Pusher configuration the gateway is off', async (t) => {
  const s = await startServer(t);
  const r = await fetch(`${s.http}/app/${APP.key}?protocol=7`);
  t.equal(r.status, 404, '/app/<key> is not served');
  const a = await fetch(`${s.http}/apps/${APP.id}/channels`);
  t.equal(a.status, 404, '/apps/<id>/… is not served');
});

t.test('connection_established, ping/pong, unknown key and protocol errors', async (t) => {
  const s = shared;
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7&client=js&version=8.4.0`);
  const est = await raw.event('pusher:connection_established');
  const info = JSON.parse(est.data);
  t.match(info.socket_id, /^\d+\.\d+$/, 'socket_id has Pusher\'s shape');
  t.equal(info.activity_timeout, 30, 'activity_timeout is half the idle timeout');
  raw.send({ event: 'pusher:ping', data: {} });
  t.same((await raw.event('pusher:pong')).data, {}, 'pong');

  const wrong = await RawPusher.open(t, `${s.url}/app/nope?protocol=7`);
  const err = await wrong.event('pusher:error');
  t.equal(err.data.code, 4001, 'unknown app key: 4001');
  t.equal((await wrong.waitClose()).code, 4001);

  const noProto = await RawPusher.open(t, `${s.url}/app/${APP.key}`);
  t.equal((await noProto.waitClose()).code, 4008, 'no protocol: 4008');
  const badProto = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=3`);
  t.equal((await badProto.waitClose()).code, 4007, 'protocol 3: 4007');

  const p = pusherClient(t, s.port);
  t.match(await connected(p), /^\d+\.\d+$/, 'pusher-js connects');
});

t.test('public channel: pusher-js receives what the HTTP API, Socket.IO and native clients publish', async (t) => {
  const s = shared;
  const p = pusherClient(t, s.port);
  await connected(p);
  const { channel } = await subscribed(p, 'orders');
  const got = nextOn(channel, 'OrderShipped');
  await api(s.http, '/api/publish', { channel: 'orders', event: 'OrderShipped', data: { id: 5 } });
  t.same(await got, { id: 5 }, 'object data arrives parsed');
  const str = nextOn(channel, 'note');
  await api(s.http, '/api/publish', { channel: 'orders', event: 'note', data: 'plain text' });
  t.equal(await str, 'plain text', 'string data arrives as the string');

  // unsubscribe: the subscriber count goes back to 0
  p.unsubscribe('orders');
  const deadline = Date.now() + 5000;
  for (;;) {
    const r = await api(s.http, '/api/channels/orders');
    if (r.body.subscribers === 0) break;
    if (Date.now() > deadline) t.fail('unsubscribe not seen');
    await new Promise((r) => setTimeout(r, 10));
  }
  t.pass('unsubscribed');
});

t.test('private channels: a signed auth subscribes, a wrong or missing one gets subscription_error', async (t) => {
  const s = shared;
  const good = pusherClient(t, s.port);
  await connected(good);
  const { channel } = await subscribed(good, 'private-orders.1');
  const got = nextOn(channel, 'paid');
  await api(s.http, '/api/publish', { channel: 'private-orders.1', event: 'paid', data: { n: 1 } });
  t.same(await got, { n: 1 });

  const bad = pusherClient(t, s.port, { badAuth: true });
  await connected(bad);
  const err = await subscribed(bad, 'private-orders.1').then(() => null, (e) => e.detail);
  t.equal(err?.status, 401, 'wrong signature: subscription_error with status 401');
  t.match(err?.error, /Invalid signature/);

  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  await raw.event('pusher:connection_established');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-orders.1' } });
  const e2 = await raw.event('pusher:subscription_error');
  t.equal(e2.channel, 'private-orders.1');
  t.equal(e2.data.status, 401, 'missing auth: 401');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'presence-x', auth: `${APP.key}:abc`, channel_data: '{nope' } });
  t.equal((await raw.event('pusher:subscription_error')).data.status, 400, 'bad channel_data: 400');
});

t.test('presence: members, member_added / member_removed once per user, client events not echoed', async (t) => {
  const s = shared;
  const ann = pusherClient(t, s.port, { member: { user_id: '1', user_info: { name: 'Ann' } } });
  const bob = pusherClient(t, s.port, { member: { user_id: '2', user_info: { name: 'Bob' } } });
  const bob2 = pusherClient(t, s.port, { member: { user_id: '2', user_info: { name: 'Bob' } } });
  await Promise.all([connected(ann), connected(bob), connected(bob2)]);
  const a = await subscribed(ann, 'presence-room.1');
  t.equal(a.data.count, 1, 'Ann alone');
  t.same(a.data.me, { id: '1', info: { name: 'Ann' } }, 'me is Ann');
  const added = nextOn(a.channel, 'pusher:member_added');
  const b = await subscribed(bob, 'presence-room.1');
  t.same((await added).info, { name: 'Bob' }, 'Ann sees Bob join');
  t.equal(b.data.count, 2, 'Bob sees two members');
  t.same(Object.keys(b.data.members).sort(), ['1', '2']);
  // Bob's second tab: no second member_added (a sentinel publication proves nothing came before it).
  await subscribed(bob2, 'presence-room.1');
  const sentinel = nextOn(a.channel, 'sentinel');
  let extraJoin = false;
  a.channel.bind('pusher:member_added', () => (extraJoin = true));
  await api(s.http, '/api/publish', { channel: 'presence-room.1', event: 'sentinel', data: {} });
  await sentinel;
  t.equal(extraJoin, false, 'a second connection of a member is not a second join');

  // client events: delivered to others, not to the sender
  const fromAnn = nextOn(b.channel, 'client-typing');
  let echoed = false;
  a.channel.bind('client-typing', () => (echoed = true));
  t.equal(a.channel.trigger('client-typing', { who: 'Ann' }), true);
  t.same(await fromAnn, { who: 'Ann' }, 'Bob gets Ann\'s client event');
  const s2 = nextOn(a.channel, 'sentinel2');
  await api(s.http, '/api/publish', { channel: 'presence-room.1', event: 'sentinel2', data: {} });
  await s2;
  t.equal(echoed, false, 'the sender does not get its own client event');

  // users API and leave
  const users = await api(s.http, '/api/channels/presence-room.1/users');
  t.same(users.body.users.map((u: any) => u.user_id).sort(), ['1', '2']);
  const removed = nextOn(a.channel, 'pusher:member_removed');
  bob.disconnect();
  bob2.disconnect();
  t.equal((await removed).id, '2', 'Bob leaves once his last connection is gone');
});

t.test("client events on presence channels carry the sender's user_id; on private channels they do not", async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const ann = pusherClient(t, s.port, { member: { user_id: 'ann-1', user_info: { name: 'Ann' } } });
  await connected(ann);
  const a = await subscribed(ann, 'presence-uid');
  const ap = await subscribed(ann, 'private-uid');
  // Bob on a raw socket, to see the exact frames.
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  const sid = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id;
  const member = { user_id: 'bob-2', user_info: { name: 'Bob' } };
  const pa = backend.authorizeChannel(sid, 'presence-uid', member);
  raw.send({ event: 'pusher:subscribe', data: { channel: 'presence-uid', auth: pa.auth, channel_data: pa.channel_data } });
  await raw.event('pusher_internal:subscription_succeeded');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-uid', auth: backend.authorizeChannel(sid, 'private-uid').auth } });
  await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === 'private-uid');

  // Ann -> Bob on the presence channel: user_id beside data, as Pusher sends it.
  a.channel.trigger('client-typing', { who: 'Ann' });
  const f = await raw.next((f) => f.event === 'client-typing');
  t.same(f, { event: 'client-typing', channel: 'presence-uid', data: JSON.stringify({ who: 'Ann' }), user_id: 'ann-1' }, "the frame carries the sender's user_id");
  // Bob -> Ann: pusher-js hands the user_id to the callback as metadata.
  const got = nextWithMeta(a.channel, 'client-reply');
  raw.send({ event: 'client-reply', channel: 'presence-uid', data: { ok: 1 } });
  const r = await got;
  t.same(r.data, { ok: 1 });
  t.same(r.meta, { user_id: 'bob-2' }, "pusher-js sees Bob's user_id");

  // On a private channel there is no member, so no user_id.
  ap.channel.trigger('client-typing', { who: 'Ann', private: true });
  const pf = await raw.next((f) => f.event === 'client-typing' && f.channel === 'private-uid');
  t.same(pf, { event: 'client-typing', channel: 'private-uid', data: JSON.stringify({ who: 'Ann', private: true }) }, 'no user_id on a private channel');
  // A backend event on the presence channel has no sender, so no user_id either.
  await backend.trigger('presence-uid', 'server-news', { n: 1 });
  const sf = await raw.next((f) => f.event === 'server-news');
  t.equal('user_id' in sf, false, 'no user_id on a backend event');

  // Cache channels replay the last event as it was sent, user_id included.
  const cached = backend.authorizeChannel(sid, 'presence-cache-uid', member);
  raw.send({ event: 'pusher:subscribe', data: { channel: 'presence-cache-uid', auth: cached.auth, channel_data: cached.channel_data } });
  await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === 'presence-cache-uid');
  await raw.event('pusher:cache_miss');
  raw.send({ event: 'client-last', channel: 'presence-cache-uid', data: { v: 7 } });
  const late = pusherClient(t, s.port, { member: { user_id: 'cat-3' } });
  await connected(late);
  const lc = late.subscribe('presence-cache-uid');
  const replayed = await nextWithMeta(lc, 'client-last');
  t.same(replayed, { data: { v: 7 }, meta: { user_id: 'bob-2' } }, 'the cached client event keeps its user_id');
});

t.test('client events: refused on public channels, when not subscribed, and past the rate limit', async (t) => {
  const s = shared;
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  await raw.event('pusher:connection_established');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'public-1' } });
  await raw.event('pusher_internal:subscription_succeeded');
  raw.send({ event: 'client-x', channel: 'public-1', data: {} });
  t.match((await raw.event('pusher:error')).data.message, /only allowed on private and presence/);
  raw.send({ event: 'client-x', channel: 'private-1', data: {} });
  t.match((await raw.event('pusher:error')).data.message, /not subscribed/);

  const p = pusherClient(t, s.port);
  await connected(p);
  const { channel } = await subscribed(p, 'private-chat');
  const errors: any[] = [];
  p.connection.bind('error', (e: any) => errors.push(e));
  for (let i = 0; i < 15; i++) channel.trigger('client-spam', { i });
  const deadline = Date.now() + 5000;
  while (!errors.some((e) => e?.data?.code === 4301) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.ok(errors.some((e) => e?.data?.code === 4301), 'more than 10 client events a second: pusher:error 4301');
});

t.test('client events: only accepted ones count against maxClientEventsPerSecond, refused ones give their token back', async (t) => {
  const s = await startServer(t, { pusherApps: [{ ...APP, maxClientEventsPerSecond: 1 }] });
  const backend = sdk(s.port);
  const join = async (channels: string[]): Promise<RawPusher> => {
    const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
    const socketId = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id;
    for (const channel of channels) {
      const auth = channel.startsWith('private-') ? backend.authorizeChannel(socketId, channel).auth : undefined;
      raw.send({ event: 'pusher:subscribe', data: { channel, auth } });
      await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === channel);
    }
    return raw;
  };
  const sender = await join(['public-rate', 'private-rate']);
  const receiver = await join(['private-rate']);

  // One at a time: each refusal comes back (and gives its token back) before the next is sent.
  for (let i = 0; i < 3; i++) {
    sender.send({ event: 'client-x', channel: 'public-rate', data: { i } });
    t.match((await sender.event('pusher:error')).data, { code: null, message: /only allowed on private and presence/ }, `refused on a public channel (${i + 1})`);
  }
  sender.send({ event: 'client-x', channel: 'private-elsewhere', data: {} });
  t.match((await sender.event('pusher:error')).data, { code: null, message: /not subscribed/ }, 'refused where not subscribed');

  // The budget is one event a second: the refusals above used none of it.
  sender.send({ event: 'client-ok', channel: 'private-rate', data: { n: 1 } });
  const got = await receiver.event('client-ok').catch(() => undefined);
  t.ok(got, `the first accepted client event is delivered (the sender got: ${JSON.stringify(sender.frames.filter((f) => f.event === 'pusher:error').map((f) => f.data))})`);
  // Accepted ones do count: a burst right after it is refused with 4301.
  for (let i = 0; i < 5; i++) sender.send({ event: 'client-ok', channel: 'private-rate', data: { n: 2 + i } });
  t.match((await sender.event('pusher:error')).data, { code: 4301, message: /rate limit/ }, 'accepted client events still count: 4301 past the rate');
});

t.test('one presence room across pusher-js, socket.io-client and a native WebSocket client', async (t) => {
  const s = shared;
  const p = pusherClient(t, s.port, { member: { user_id: '1', user_info: { name: 'Pat' } } });
  await connected(p);
  const room = await subscribed(p, 'presence-room.2');

  const sioJoined = nextOn(room.channel, 'pusher:member_added', (m: any) => m.id === '2');
  const sio = await sioConnect(t, s.http, { auth: { token: token('2', 'Sio') } });
  const sioAck = await sio.timeout(5000).emitWithAck('subscribe', { channel: 'presence-room.2' });
  t.equal(sioAck.ok, true, 'socket.io client joins');
  t.same((await sioJoined).info, { name: 'Sio' }, 'pusher-js sees the socket.io member');

  const natJoinedP = nextOn(room.channel, 'pusher:member_added', (m: any) => m.id === '3');
  const natJoinedS = nextEvent(sio, 'presence:joining', (_ch, m) => m.user_id === '3');
  const nat = await TestClient.connect(`${s.url}/ws?token=${token('3', 'Nat')}`);
  t.teardown(() => nat.close());
  const sub = await nat.request({ op: 'subscribe', channel: 'presence-room.2' });
  t.same(sub.members.map((m: any) => m.user_id).sort(), ['1', '2', '3'], 'the native client sees all three members');
  await natJoinedP;
  await natJoinedS;
  t.pass('pusher-js and socket.io see the native member');

  // a whisper from pusher-js reaches both others
  const toSio = nextEvent(sio, 'client-wave', (ch) => ch === 'presence-room.2');
  const toNat = nat.next((f) => f.op === 'message' && f.event === 'client-wave');
  room.channel.trigger('client-wave', { from: 'Pat' });
  t.same((await toSio)[1], { from: 'Pat' }, 'socket.io gets the pusher-js client event');
  t.same((await toNat).data, { from: 'Pat' }, 'native gets it');

  // a native publish reaches pusher-js
  const toPusher = nextWithMeta(room.channel, 'client-hi');
  await nat.request({ op: 'publish', channel: 'presence-room.2', event: 'client-hi', data: { from: 'Nat' } });
  const hi = await toPusher;
  t.same(hi.data, { from: 'Nat' }, 'pusher-js gets the native publish');
  t.same(hi.meta, { user_id: '3' }, "with the native member's user_id");
  // Other protocols are unchanged: no user field in native frames or history.
  t.equal('user' in (await toNat), false, 'the native message frame has no user field');
  const hist = await nat.request({ op: 'history', channel: 'presence-room.2', limit: 5 });
  t.ok(hist.publications.length >= 2, 'history has the client events');
  t.equal(hist.publications.some((p: any) => 'user' in p), false, 'native history shows no user field');

  const left = nextEvent(sio, 'presence:leaving', (_ch, m) => m.user_id === '1');
  p.disconnect();
  await left;
  t.pass('socket.io sees the pusher-js member leave');
});

t.test('a watchlist in the signed user data: pusher_internal:watchlist_events frames (behaviour: pusher-watchlist.test.ts)', async (t) => {
  const s = shared;
  const open = async () => {
    const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
    return { raw, sid: JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string };
  };
  const w = await open();
  w.raw.send({ event: 'pusher:signin', data: sdk(s.port).authenticateUser(w.sid, { id: 'watcher-1', watchlist: ['friend-1', 'friend-2'] } as never) });
  const ok = await w.raw.event('pusher:signin_success');
  t.match(JSON.parse(ok.data.user_data), { id: 'watcher-1', watchlist: ['friend-1', 'friend-2'] }, 'sign-in succeeds');
  const first = await w.raw.event('pusher_internal:watchlist_events');
  t.equal(first.channel, undefined, 'no channel');
  t.type(first.data, 'string', 'data is a JSON string, as in every Pusher event');
  t.same(JSON.parse(first.data), { events: [{ name: 'offline', user_ids: ['friend-1', 'friend-2'] }] }, 'the first report');
  const f = await open();
  f.raw.send({ event: 'pusher:signin', data: sdk(s.port).authenticateUser(f.sid, { id: 'friend-1' } as never) });
  const on = await w.raw.event('pusher_internal:watchlist_events');
  t.same(JSON.parse(on.data), { events: [{ name: 'online', user_ids: ['friend-1'] }] }, 'friend-1 comes online');
  f.raw.ws.close();
  const off = await w.raw.event('pusher_internal:watchlist_events');
  t.same(JSON.parse(off.data), { events: [{ name: 'offline', user_ids: ['friend-1'] }] }, 'and goes offline');
});

t.test('hostile input gets pusher:error and never crashes the shard', async (t) => {
  const s = await startServer(t, pusherOptions({ maxPayload: '4kb' }));
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  await raw.event('pusher:connection_established');
  for (const garbage of ['not json', '[]', '{"event":5}', 'null', '{"event":"pusher:subscribe","data":{"channel":"bad name!"}}', '{"event":"nope"}']) {
    raw.send(garbage);
    const e = await raw.event('pusher:error');
    t.type(e.data.message, 'string', `answered: ${garbage}`);
  }
  raw.send(Buffer.from([1, 2, 3]));
  t.match((await raw.event('pusher:error')).data.message, /Binary/);
  raw.send(JSON.stringify({ event: 'client-big', channel: 'private-x', data: 'x'.repeat(5000) }));
  t.match((await raw.event('pusher:error')).data.message, /too big/i, 'over --max-payload: error, connection kept');
  raw.send({ event: 'pusher:signin', data: { auth: 'x:y', user_data: '{"id":"1"}' } });
  t.equal((await raw.waitClose()).code, 4009, 'bad sign-in signature: closed with 4009');

  const flood = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  await flood.event('pusher:connection_established');
  for (let i = 0; i < 25; i++) flood.send('garbage');
  t.equal((await flood.waitClose()).code, 4300, 'a client that keeps sending garbage is closed with 4300');

  const p = pusherClient(t, s.port);
  await connected(p);
  await subscribed(p, 'still-alive');
  t.pass('the server still serves new clients');
});
