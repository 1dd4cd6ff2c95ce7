// The Socket.IO gateway with the official socket.io-client: transports and the upgrade, cross-shard
// sessions, namespaces, acks both ways, binary, request handlers, msgpack parser, disconnects, restart.
import t, { type Test } from 'tap';
import { Manager } from 'socket.io-client';
import msgpackParser from 'socket.io-msgpack-parser';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { freePort, http, nextEvent, rawHandshake, sioConnect, spareConnection, upgraded } from './helpers/sio.js';

const ACTORS = new URL('./fixtures/socketio-actors', import.meta.url).pathname;
const JS_HANDLERS = new URL('./fixtures/socketio-js', import.meta.url).pathname;
const token = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { secret: JWT_SECRET });

// One server for most tests: starting one with TypeScript handler files takes a while.
// Recovery off here: these tests check deliveries as exactly (event, channel, data); test/socketio-recovery.test.ts covers the offsets.
const s = await startServer(t, { actors: ACTORS, socketioNamespaces: '/chat', socketioRecovery: 0 });

t.test('websocket-only, polling-only and polling-then-upgrade clients: subscribe, deliveries, handlers, binary', async (t) => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['websocket', { transports: ['websocket'] }],
    ['polling', { transports: ['polling'] }],
    ['default', {}],
  ];
  for (const [name, opts] of cases) {
    const c = await sioConnect(t, s.http, opts);
    t.match(c.id, /^\d+\.[0-9a-f]+$/, `${name}: socket id names its shard`);
    t.same(await c.emitWithAck('subscribe', { channel: 'news' }), { ok: true }, `${name}: subscribe ack`);
    const got = nextEvent(c, 'headline');
    t.equal((await api(s.http, '/api/publish', { channel: 'news', event: 'headline', data: { n: 1, name } })).status, 200);
    t.same(await got, ['news', { n: 1, name }], `${name}: a delivery is (event, channel, data)`);
    t.same(await c.emitWithAck('echo', 1, 'two', { three: [3] }, null), [1, 'two', { three: [3] }, null], `${name}: any number of args, answered through the ack`);
    const bin = await c.emitWithAck('binary', { name: 'blob', bytes: Buffer.from([1, 2, 3, 250]) });
    t.equal(bin.size, 4, `${name}: binary argument arrived whole`);
    t.same([...bin.reversed], [250, 3, 2, 1], `${name}: binary in the ack`);
    t.equal(Buffer.from(bin.nested[0].deep).toString(), 'ok', `${name}: nested binary in the ack`);
    // An event name Socket.IO reserves cannot be delivered to it (its parser would drop the connection).
    const after = nextEvent(c, 'headline');
    await api(s.http, '/api/publish', { channel: 'news', event: 'disconnect', data: 'x' });
    await api(s.http, '/api/publish', { channel: 'news', event: 'headline', data: 'after' });
    t.same(await after, ['news', 'after'], `${name}: a publication named "disconnect" is skipped, the connection stays`);
    t.equal(c.connected, true);
    if (name === 'polling') t.equal(c.io.engine.transport.name, 'polling', 'polling-only client never upgraded');
    if (name === 'default') {
      await upgraded(c);
      t.equal(c.io.engine.transport.name, 'websocket', 'default client upgraded to WebSocket');
      const again = nextEvent(c, 'headline');
      await api(s.http, '/api/publish', { channel: 'news', event: 'headline', data: { n: 2 } });
      t.same(await again, ['news', { n: 2 }], 'deliveries continue after the upgrade');
    }
    c.close();
  }
});

t.test('a polling session is served whichever shard each request lands on', async (t) => {
  const base = `${s.http}/socket.io/?EIO=4&transport=polling`;
  const hs = await rawHandshake(s.http);
  t.match(hs, { upgrades: ['websocket'], pingInterval: 25000, pingTimeout: 20000, maxPayload: 1000000 }, 'handshake carries the configured values');
  const raw = (await http(base)).body;
  t.match(raw, /^0\{"sid":"[^"]+","upgrades":\["websocket"\],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000\}$/, 'open packet, keys in protocol order');
  const url = `${base}&sid=${encodeURIComponent(hs.sid)}`;
  // Every request below opens a new TCP connection; the acceptor alternates them between the shards.
  const post = async (body: string) => {
    const r = await http(url, { method: 'POST', body, headers: { 'content-type': 'text/plain;charset=UTF-8' } });
    t.equal(r.status, 200, `POST ${JSON.stringify(body)}`);
    t.equal(r.body, 'ok');
  };
  const get = async () => {
    const r = await http(url);
    t.equal(r.status, 200);
    t.equal(r.headers.get('content-type'), 'text/plain; charset=UTF-8');
    return r.body;
  };
  await post('40');
  t.match(await get(), /^40\{"sid":"\d+\.[0-9a-f]+"\}$/, 'CONNECT answered with the socket id');
  await post('421["subscribe",{"channel":"raw"}]\x1e422["echo","a",{"b":2}]');
  const acks = (await get()).split('\x1e');
  t.same(acks.sort(), ['431[{"ok":true}]', '432[["a",{"b":2}]]'], 'two packets in one POST, two acks in one GET');
  for (let i = 0; i < 4; i++) {
    const pending = get();
    await api(s.http, '/api/publish', { channel: 'raw', event: 'tick', data: i });
    t.equal(await pending, `42["tick","raw",${i}]`, `held poll #${i} answered with the delivery`);
  }
  await post('1');
  // The one poll that may have raced the client's own close gets a noop (see docs/socketio.md); then 400.
  const raced = await http(url);
  t.ok(raced.status === 400 || (raced.status === 200 && raced.body === '6'), `closed session: 400, or the racing poll's noop (${raced.status})`);
  t.equal((await http(url)).status, 400, 'closed session: 400');
  t.same(JSON.parse((await http(url)).body), { code: 1, message: 'Session ID unknown' });
});

/** Handler thread ids by shard, learned from WebSocket-only clients (their ids name their shard). */
async function shardThreads(t: Test, url: string): Promise<Map<string, number>> {
  const map = new Map<string, number>();
  for (let i = 0; i < 6 && map.size < 2; i++) {
    const c = await sioConnect(t, url, { transports: ['websocket'] });
    const who = await c.emitWithAck('whoami');
    map.set(c.id!.split('.')[0]!, who.thread);
    c.close();
  }
  return map;
}

t.test('upgrading onto another shard moves the session: channels, presence, data, exclusion and order survive', async (t) => {
  const threads = await shardThreads(t, s.http);
  t.equal(threads.size, 2, 'both shards seen');
  const watcher = await sioConnect(t, s.http, { transports: ['websocket'], auth: { token: token('watcher', { channels: ['presence-*'] }) } });
  await watcher.emitWithAck('subscribe', { channel: 'presence-room' });
  const leaves: unknown[] = [];
  watcher.on('presence:leaving', (_ch: string, m: unknown) => leaves.push(m));
  let moved = 0;
  // With and without one extra TCP connection before the WebSocket: one of the two puts the upgrade's
  // WebSocket on the other shard, whatever the client's own connection pattern.
  for (const spare of [false, true, false, true]) {
    const m = new Manager(s.http, { reconnection: false, forceNew: true, autoConnect: false });
    const c = m.socket('/', { auth: { token: token('mover', { channels: ['presence-*'] }) } });
    t.teardown(() => c.close());
    c.connect();
    if (spare) m.engine.once('handshake', () => spareConnection(t, s.port));
    const up = new Promise<void>((r) => m.engine.once('upgrade', () => r()));
    await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
    const home = c.id!.split('.')[0]!;
    await c.emitWithAck('remember', { spare });
    t.same(await c.emitWithAck('subscribe', { channel: 'news' }), { ok: true });
    t.same(await c.emitWithAck('subscribe', { channel: 'presence-room' }), { ok: true });
    const seen: number[] = [];
    c.on('seq', (_ch: string, n: number) => seen.push(n));
    // Publications racing the upgrade: each must arrive exactly once and in order.
    const pubs = Array.from({ length: 20 }, (_, i) => i);
    const publishing = (async () => {
      for (const i of pubs) await api(s.http, '/api/publish', { channel: 'news', event: 'seq', data: i });
    })();
    await up;
    await publishing;
    const who = await c.emitWithAck('whoami');
    if (who.thread !== threads.get(home)) moved++;
    t.equal(who.socketId, c.id, 'the socket id the client knows stays the same');
    t.same(who.channels.sort(), ['news', 'presence-room'], 'subscriptions came along');
    t.same(await c.emitWithAck('recall'), { spare }, 'connection data came along');
    // exclusion by the socket id the client knows (laravel-echo's X-Socket-ID / toOthers)
    await api(s.http, '/api/publish', { channel: 'news', event: 'seq', data: -1, socket_id: c.id });
    const end = nextEvent(c, 'end');
    await api(s.http, '/api/publish', { channel: 'news', event: 'end', data: null });
    await end;
    t.same(seen, pubs, 'every publication exactly once, in order; the excluded one not at all');
    c.close();
    await nextEvent(watcher, 'presence:leaving');
  }
  t.ok(moved >= 1, `at least one session moved to another shard (${moved})`);
  t.equal(leaves.length, 4, 'one leave per closed client, none during the moves');
});

t.test('namespaces: configured, from handler files, unknown refused; connect hooks refuse with a code', async (t) => {
  const m = new Manager(s.http, { reconnection: false, forceNew: true });
  const root = m.socket('/');
  const chat = m.socket('/chat');
  t.teardown(() => (root.close(), chat.close()));
  await Promise.all([nextEvent(root, 'connect'), nextEvent(chat, 'connect')]);
  t.not(root.id, chat.id, 'each namespace is its own socket');
  await root.emitWithAck('subscribe', { channel: 'lobby' });
  await chat.emitWithAck('subscribe', { channel: 'lobby' });
  const onChat = nextEvent(chat, 'msg');
  const onRoot = nextEvent(root, 'msg');
  await api(s.http, '/api/publish', { channel: 'lobby', event: 'msg', data: 'hi' });
  t.same(await onChat, ['lobby', 'hi'], 'delivered on /chat');
  t.same(await onRoot, ['lobby', 'hi'], 'and on / (same engine connection)');
  t.same(await chat.emitWithAck('whoami'), { error: { code: 'no_handler', message: 'no handler for event "whoami" in namespace /chat' } }, 'handlers are per namespace');

  const nope = m.socket('/nope');
  const [err] = await nextEvent(nope, 'connect_error');
  t.equal(err.message, 'Invalid namespace', 'unknown namespace: CONNECT_ERROR');

  const anon = m.socket('/orders');
  const [refused] = await nextEvent(anon, 'connect_error');
  t.equal(refused.message, 'log in to place orders');
  t.same(refused.data, { code: 'login_required' }, 'onConnect refusal carries its code');
  const orders = await sioConnect(t, s.http + '/orders', { auth: { token: token('42') } });
  t.same(await orders.emitWithAck('whoami'), { namespace: '/orders', userId: '42' });
});

t.test('request handlers: acks both ways, emit back, publish to channels reaching every transport, errors', async (t) => {
  const c = await sioConnect(t, s.http, { auth: { token: token('7', { user_info: { name: 'Ann' } }) } });
  const native = await TestClient.connect(s.url + '/ws');
  t.teardown(() => native.close());
  t.equal((await native.request({ op: 'subscribe', channel: 'orders' })).ok, true);
  const mem = s.connect();
  t.teardown(() => mem.close());
  await mem.subscribe('orders');
  const memGot = new Promise<any>((r) => mem.on('message', r));

  const who = await c.emitWithAck('whoami');
  t.match(who, { socketId: c.id, userId: '7', auth: { token: String }, transport: 'socket.io' }, 'handler sees identity and handshake auth');
  const receipt = nextEvent(c, 'order.receipt');
  const placed = await c.emitWithAck('order.place', { item: 'book' });
  t.match(placed, { ok: true, id: /^o-/ }, 'handler result answers the ack');
  t.same(await receipt, [{ id: placed.id }], 'handler emitted back to the connection');
  const nf = await native.next((f) => f.op === 'message' && f.channel === 'orders');
  t.same(nf.data, { id: placed.id, item: 'book', by: '7' }, 'its publish reached a native WebSocket subscriber');
  t.same((await memGot).data, { id: placed.id, item: 'book', by: '7' }, 'and an in-memory subscriber');

  t.same(await c.emitWithAck('order.place', {}), { error: { code: 'bad_order', message: 'an order needs an item' } }, 'HandlerError code reaches the client');
  t.same(await c.emitWithAck('boom'), { error: { code: 'handler_failed', message: 'the request handler failed' } }, 'a crashing handler does not leak internals');
  t.equal((await c.emitWithAck('nope')).error.code, 'no_handler');
  const errEvent = nextEvent(c, 'error');
  c.emit('nope', 1);
  t.match((await errEvent)[0], { code: 'no_handler', event: 'nope' }, 'without an ack the failure arrives as an error event');

  c.on('question', (q: string, cb: (a: string) => void) => cb(`${q}? 42`));
  t.same(await c.emitWithAck('ask', 'meaning'), { answer: 'meaning? 42' }, 'server emitWithAck answered by the client ack');

  // native clients reach the same handlers with op rpc
  const r = await native.request({ op: 'rpc', event: 'order.place', data: { item: 'pen' } });
  t.match(r, { ok: true, data: { ok: true, id: /^o-/ } }, 'native rpc answered by the handler');
  t.same((await native.next((f) => f.op === 'message' && f.event === 'order.receipt')).data, { id: r.data.id }, 'handler emit reaches the native client');
  t.equal((await native.request({ op: 'rpc', event: 'order.place', data: 1 })).error.code, 'bad_order');
  t.equal((await native.request({ op: 'rpc', event: 'nothing', data: 1 })).error.code, 'no_handler');
});

t.test('handshake and subscribe authorization: JWT, refusals with codes, the actor authorize', async (t) => {
  const expired = signJwt({ sub: '1', exp: Math.floor(Date.now() / 1000) - 3600 }, { secret: JWT_SECRET });
  await t.rejects(sioConnect(t, s.http, { auth: { token: expired } }), { message: /expired/, data: { code: 'token_expired' } }, 'expired handshake token refused');
  await t.rejects(sioConnect(t, s.http, { auth: { token: 'a.b.c' } }), { data: { code: /^token_/ } }, 'garbage token refused');
  const anon = await sioConnect(t, s.http, { transports: ['websocket'] });
  t.match(await anon.emitWithAck('subscribe', { channel: 'private-x' }), { ok: false, error: { code: 'unauthorized' } }, 'private channel without a token');
  const subErr = nextEvent(anon, 'subscription_error');
  anon.emit('subscribe', { channel: 'private-y' });
  t.match(await subErr, ['private-y', { code: 'unauthorized' }], 'without an ack: subscription_error (channel, error)');
  t.match(await anon.emitWithAck('subscribe', { channel: 'private-x', auth: { headers: { Authorization: `Bearer ${token('5', { channels: ['private-*'] })}` } } }), { ok: true }, 'JWT in the subscribe auth headers');
  t.match(await anon.emitWithAck('subscribe', { channel: 'private-z', auth: { headers: { Authorization: `Bearer ${expired}` } } }), { ok: false, error: { code: 'token_expired' } });
  t.match(await anon.emitWithAck('subscribe', { channel: 'private-vip-1', data: { pass: 'wrong' } }), { ok: false, error: { code: 'forbidden' } }, 'actor authorize refuses');
  t.same(await anon.emitWithAck('subscribe', { channel: 'private-vip-1', data: { pass: 'open sesame' } }), { ok: true }, 'actor authorize admits');
  t.match(await anon.emitWithAck('subscribe', { channel: 'news', data: 1 }), { ok: true });
  t.match(await anon.emitWithAck('subscribe', { channel: 'news' }), { ok: false, error: { code: 'already_subscribed' } });
  t.match(await anon.emitWithAck('subscribe', { channel: 'bad name' }), { ok: false, error: { code: 'invalid_channel' } });
  t.match(await anon.emitWithAck('subscribe', 'news'), { ok: false, error: { code: 'bad_request' } });
  t.match(await anon.emitWithAck('unsubscribe', { channel: 'never' }), { ok: false, error: { code: 'not_subscribed' } });
  t.same(await anon.emitWithAck('unsubscribe', { channel: 'news' }), { ok: true });
  t.match(await anon.emitWithAck('client event', { channel: 'news', event: 'client-x', data: 1 }), { ok: false, error: { code: 'not_subscribed' } });
  const authed = await sioConnect(t, s.http, { auth: { token: token('9', { channels: ['private-team'] }) } });
  t.same(await authed.emitWithAck('subscribe', { channel: 'private-team' }), { ok: true }, 'handshake token grants the channel');
  t.match(await authed.emitWithAck('subscribe', { channel: 'private-other' }), { ok: false, error: { code: 'forbidden' } }, 'not granted by the token');
});

t.test('msgpack parser: deliveries, acks, binary over websocket and polling', async (t) => {
  const s = await startServer(t, { actors: JS_HANDLERS, socketioParser: 'msgpack', socketioRecovery: 0 });
  for (const transports of [['websocket'], ['polling']]) {
    const c = await sioConnect(t, s.http, { transports, parser: msgpackParser });
    t.same(await c.emitWithAck('subscribe', { channel: 'mp' }), { ok: true }, `${transports}: subscribe`);
    const got = nextEvent(c, 'ev');
    await api(s.http, '/api/publish', { channel: 'mp', event: 'ev', data: { deep: [1, { x: 'y' }] } });
    t.same(await got, ['mp', { deep: [1, { x: 'y' }] }], `${transports}: delivery`);
    const bin = await c.emitWithAck('binary', { name: 'm', bytes: Buffer.from([9, 8]) });
    t.same([bin.size, [...bin.reversed]], [2, [8, 9]], `${transports}: binary both ways`);
    c.close();
  }
});

t.test('clean disconnects and server kicks', async (t) => {
  const a = await sioConnect(t, s.http, { auth: { token: token('a', { channels: ['presence-*'] }) } });
  const b = await sioConnect(t, s.http, { transports: ['polling'], auth: { token: token('b', { channels: ['presence-*'] }) } });
  await a.emitWithAck('subscribe', { channel: 'presence-hall' });
  const joining = nextEvent(a, 'presence:joining');
  const [, members] = await Promise.all([b.emitWithAck('subscribe', { channel: 'presence-hall' }), nextEvent(b, 'presence:subscribed')]);
  t.same(members[1].map((m: { user_id: string }) => m.user_id).sort(), ['a', 'b'], 'presence:subscribed lists the members');
  t.same(await joining, ['presence-hall', { user_id: 'b' }]);
  const leaving = nextEvent(a, 'presence:leaving');
  b.disconnect();
  t.same(await leaving, ['presence-hall', { user_id: 'b' }], 'a client disconnect is a leave');
  t.match((await api(s.http, '/api/channels/presence-hall')).body, { subscribers: 1, presence: 1 });

  const gone = nextEvent(a, 'disconnect');
  t.equal((await api(s.http, '/api/users/a/disconnect', {})).status, 200);
  t.equal((await gone)[0], 'io server disconnect', 'kicked by the API: told not to reconnect');
});

t.test('a server kick of a polling client is one disconnect, io server disconnect (no transport close first)', async (t) => {
  const c = await sioConnect(t, s.http, { transports: ['polling'], auth: { token: token('p5') } });
  const gone = nextEvent(c, 'disconnect');
  t.equal((await api(s.http, '/api/users/p5/disconnect', {})).status, 200);
  t.equal((await gone)[0], 'io server disconnect', 'the first and only disconnect says: do not reconnect');
  t.equal(c.active, false, 'not reconnecting');
});

t.test('subscribe, unsubscribe, subscribe sent back to back (laravel-echo leave then join) end subscribed', async (t) => {
  const c = await sioConnect(t, s.http, { transports: ['websocket'], auth: { token: token('lj', { channels: ['private-again'] }) } });
  for (const channel of ['again', 'private-again']) {
    const acks = await Promise.all([c.emitWithAck('subscribe', { channel }), c.emitWithAck('unsubscribe', { channel }), c.emitWithAck('subscribe', { channel })]);
    t.same(acks, [{ ok: true }, { ok: true }, { ok: true }], `${channel}: each in the order sent`);
    t.same((await c.emitWithAck('whoami')).channels, [channel], `${channel}: subscribed at the end`);
    const got = nextEvent(c, 'x');
    await api(s.http, '/api/publish', { channel, event: 'x', data: 1 });
    t.same(await got, [channel, 1], `${channel}: delivered`);
    t.same(await c.emitWithAck('unsubscribe', { channel }), { ok: true });
  }
});

t.test('reconnection after a server restart', async (t) => {
  // A fixed port: uWS sets SO_REUSEADDR only when given one, and without it the closed connections'
  // TIME_WAIT would keep the port busy for a minute.
  const port = await freePort();
  const s = await startServer(t, { port });
  // A short connect timeout: an attempt that reaches the new server while it is still starting waits
  // for it (the acceptor listens before the shards are ready).
  const c = await sioConnect(t, s.http, { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200, timeout: 1000, transports: ['websocket'] });
  const dropped = nextEvent(c, 'disconnect');
  await s.close();
  t.equal((await dropped)[0], 'transport close', 'server shutdown drops the transport (so the client reconnects)');
  const reconnected = nextEvent(c, 'connect', () => true, 10000);
  const s2 = await startServer(t, { port });
  await reconnected;
  t.equal(c.connected, true, 'reconnected to the restarted server');
  t.same(await c.emitWithAck('subscribe', { channel: 'after' }), { ok: true });
  const got = nextEvent(c, 'x');
  await api(s2.http, '/api/publish', { channel: 'after', event: 'x', data: 1 });
  // Recovery is on here (the default): the delivery's last argument is its offset.
  const args = await got;
  t.same(args.slice(0, 2), ['after', 1]);
  t.match(args[2], /^\d+\.[0-9a-f]{12}~\d+$/, 'the recovery offset');
});
