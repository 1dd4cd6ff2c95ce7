// laravel-echo (broadcaster 'socket.io') with the official socket.io-client, unchanged: public, private
// and presence channels, whisper, toOthers, JWT or a Laravel-style auth endpoint, re-subscribe after a restart.
import t, { type Test } from 'tap';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { freePort, nextEvent } from './helpers/sio.js';

const token = (sub: string, name: string) =>
  signJwt({ sub, user_info: { name }, channels: ['private-*', 'presence-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

type AnyEcho = Echo<'socket.io'>;

// Each Echo gets its own `auth` object: Echo's bearerToken/csrfToken options write into a default
// object shared by every instance in the process (harmless in a browser, wrong for several here).
function echo(t: Test, host: string, opts: Record<string, unknown> = {}): AnyEcho {
  const e = new Echo({ broadcaster: 'socket.io', host, client: io, forceNew: true, reconnection: false, auth: { headers: {} }, ...opts } as never) as AnyEcho;
  t.teardown(() => e.disconnect());
  return e;
}

function socketOf(e: AnyEcho) {
  return (e.connector as unknown as { socket: import('socket.io-client').Socket }).socket;
}

async function connected(e: AnyEcho): Promise<void> {
  const s = socketOf(e);
  if (!s.connected) await nextEvent(s, 'connect');
}

/** Resolves with the first value `register` hands to its callback. */
function once<T = unknown>(register: (cb: (v: T) => void) => void, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for an Echo callback')), timeoutMs);
    register((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/**
 * Echo has no "subscribed" callback for socket.io: wait until the server counts the subscribers. A
 * publication after that reaches them (the owner answered their subscribe before it delivers).
 */
async function subscribers(base: string, channel: string, n: number): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const r = await api(base, `/api/channels/${encodeURIComponent(channel)}`);
    if (r.body.subscribers === n) return;
    if (Date.now() > deadline) throw new Error(`${channel}: ${r.body.subscribers} subscribers, expected ${n}`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

t.test('public, private and presence channels with JWTs: listen, whisper, here/joining/leaving, toOthers', async (t) => {
  const s = await startServer(t);
  const ann = echo(t, s.http, { auth: { headers: { Authorization: `Bearer ${token('1', 'Ann')}` } } });
  const bob = echo(t, s.http, { auth: { headers: { Authorization: `Bearer ${token('2', 'Bob')}` } } });
  await Promise.all([connected(ann), connected(bob)]);

  // public channel, Laravel's event naming (namespace App.Events)
  const shipped = once((cb) => ann.channel('orders').listen('OrderShipped', cb));
  const custom = once((cb) => ann.channel('orders').listen('.custom-name', cb));
  await subscribers(s.http, 'orders', 1);
  await api(s.http, '/api/publish', { channel: 'orders', event: 'App\\Events\\OrderShipped', data: { id: 5 } });
  await api(s.http, '/api/publish', { channel: 'orders', event: 'custom-name', data: 'x' });
  t.same(await shipped, { id: 5 }, 'listen("OrderShipped") receives App\\Events\\OrderShipped');
  t.equal(await custom, 'x', 'listen(".custom-name") receives the raw event name');

  // private channel + whisper, to Echo and to a native WebSocket subscriber
  const native = await TestClient.connect(`${s.url}/ws?token=${token('3', 'Nat')}`);
  t.teardown(() => native.close());
  t.equal((await native.request({ op: 'subscribe', channel: 'private-chat.1' })).ok, true);
  const annChat = ann.private('chat.1');
  const bobChat = bob.private('chat.1');
  const msg = once((cb) => bobChat.listen('.message', cb));
  const typing = once((cb) => bobChat.listenForWhisper('typing', cb));
  let annHeardOwnWhisper = false;
  annChat.listenForWhisper('typing', () => (annHeardOwnWhisper = true));
  await subscribers(s.http, 'private-chat.1', 3);
  await api(s.http, '/api/publish', { channel: 'private-chat.1', event: 'message', data: { text: 'hello' } });
  t.same(await msg, { text: 'hello' }, 'private channel delivery');
  annChat.whisper('typing', { name: 'Ann' });
  t.same(await typing, { name: 'Ann' }, 'whisper reaches the other Echo client');
  const nw = await native.next((f) => f.op === 'message' && f.event === 'client-typing');
  t.same([nw.channel, nw.data], ['private-chat.1', { name: 'Ann' }], 'whisper reaches a native WebSocket subscriber');
  // the sender does not hear its own whisper: a later publication arrives, the whisper did not
  const later = once((cb) => annChat.listen('.later', cb));
  await api(s.http, '/api/publish', { channel: 'private-chat.1', event: 'later', data: 1 });
  await later;
  t.equal(annHeardOwnWhisper, false, 'no echo of your own whisper');

  // toOthers: the backend sends X-Socket-ID as socket_id
  const bobGot = once((cb) => bobChat.listen('.mine', cb));
  let annGotMine = false;
  annChat.listen('.mine', () => (annGotMine = true));
  await api(s.http, '/api/publish', { channel: 'private-chat.1', event: 'mine', data: 'only others', socket_id: ann.socketId() });
  t.equal(await bobGot, 'only others');
  const marker = once((cb) => annChat.listen('.marker', cb));
  await api(s.http, '/api/publish', { channel: 'private-chat.1', event: 'marker', data: 1 });
  await marker;
  t.equal(annGotMine, false, 'the sender (socket_id) was excluded');

  // presence: here / joining / leaving, one join per user
  const here = once<unknown[]>((cb) => ann.join('room.1').here(cb));
  t.same(await here, [{ name: 'Ann' }], 'here() lists the members');
  const joins: unknown[] = [];
  const leaves: unknown[] = [];
  ann.join('room.1').joining((u: unknown) => joins.push(u)).leaving((u: unknown) => leaves.push(u));
  const bobHere = once<unknown[]>((cb) => bob.join('room.1').here(cb));
  t.same(((await bobHere) as Array<{ name: string }>).map((m) => m.name).sort(), ['Ann', 'Bob']);
  while (joins.length < 1) await new Promise((r) => setTimeout(r, 10));
  t.same(joins, [{ name: 'Bob' }], 'joining(Bob)');
  const bob2 = echo(t, s.http, { auth: { headers: { Authorization: `Bearer ${token('2', 'Bob')}` } } });
  await connected(bob2);
  await once((cb) => bob2.join('room.1').here(cb));
  await subscribers(s.http, 'presence-room.1', 3);
  bob2.leave('room.1');
  await subscribers(s.http, 'presence-room.1', 2);
  bob.leave('room.1');
  while (leaves.length < 1) await new Promise((r) => setTimeout(r, 10));
  t.same(joins, [{ name: 'Bob' }], 'a second tab of the same user is not a second join');
  t.same(leaves, [{ name: 'Bob' }], 'leaving(Bob) once, when his last connection left');
});

interface AuthCall { channel: string; socketId: string; cookie?: string; csrf?: string; contentType?: string }

/** A small node:http server answering like Laravel's /broadcasting/auth with the Redis broadcaster. */
async function laravel(t: Test): Promise<{ url: string; calls: AuthCall[] }> {
  const calls: AuthCall[] = [];
  const srv = createHttpServer(async (req: IncomingMessage, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    const form = new URLSearchParams(body);
    const call: AuthCall = { channel: form.get('channel_name') ?? '', socketId: form.get('socket_id') ?? '', cookie: req.headers.cookie, csrf: req.headers['x-csrf-token'] as string | undefined, contentType: req.headers['content-type'] };
    calls.push(call);
    const send = (status: number, payload: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(payload));
    };
    if (req.method !== 'POST' || req.url !== '/broadcasting/auth') return send(404, { message: 'not found' });
    if (call.cookie !== 'laravel_session=abc' || call.csrf !== 'csrf-123') return send(419, { message: 'CSRF token mismatch.' });
    if (call.channel === 'private-orders.5') return send(200, true);
    if (call.channel === 'presence-lobby') return send(200, { channel_data: { user_id: 10, user_info: { name: 'Lara' } } });
    if (call.channel === 'presence-scoped') return send(200, { channel_data: { user_id: '10 @admin' } });
    // 64-bit ids as PHP's json_encode writes them (JSON.stringify cannot): as the redis broadcaster
    // answers (an object) and as the pusher broadcaster does (a JSON string).
    const raw = (text: string) => (res.writeHead(200, { 'content-type': 'application/json' }), res.end(text));
    if (call.channel === 'presence-big') return raw('{"channel_data":{"user_id":12345678901234567891,"user_info":{"name":"Snow"}}}');
    if (call.channel === 'presence-big2') return raw(JSON.stringify({ channel_data: '{"user_id":12345678901234567892,"user_info":{"name":"Flake"}}' }));
    return send(403, { message: 'This action is unauthorized.' });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise((r) => srv.close(r)));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/broadcasting/auth`, calls };
}

t.test('auth endpoint: called with the client headers and handshake cookie, channel_data for presence, refusals', async (t) => {
  const backend = await laravel(t);
  const s = await startServer(t, { authEndpoint: backend.url });
  const e = echo(t, s.http, { auth: { headers: { 'X-CSRF-TOKEN': 'csrf-123' } }, extraHeaders: { cookie: 'laravel_session=abc' } });
  await connected(e);
  const shipped = once((cb) => e.private('orders.5').listen('.shipped', cb));
  await subscribers(s.http, 'private-orders.5', 1);
  await api(s.http, '/api/publish', { channel: 'private-orders.5', event: 'shipped', data: { id: 5 } });
  t.same(await shipped, { id: 5 }, 'private channel authorized by the backend');
  const call = backend.calls.find((c) => c.channel === 'private-orders.5')!;
  t.match(call, { cookie: 'laravel_session=abc', csrf: 'csrf-123', contentType: 'application/x-www-form-urlencoded', socketId: e.socketId() }, 'called like laravel-echo-server did');

  t.same(await once((cb) => e.join('lobby').here(cb)), [{ name: 'Lara' }], 'presence member from channel_data');
  const members = await api(s.http, '/api/channels/presence-lobby/users');
  t.same(members.body, { users: [{ user_id: '10', user_info: { name: 'Lara' } }] });

  const sock = socketOf(e);
  const refused = nextEvent(sock, 'subscription_error', (ch: string) => ch === 'private-secret');
  e.private('secret');
  t.match((await refused)[1], { code: 'forbidden', message: /refused private-secret \(HTTP 403\)/ }, 'backend refusal reaches the client');
  t.match(await sock.emitWithAck('subscribe', { channel: 'private-other', auth: { headers: {} } }), { ok: false, error: { code: 'auth_failed' } }, 'a backend error status (CSRF) is a clear error');
  // A member id that spells another Pusher app's user (src/runtime/app-scope.ts) is not taken from the backend either.
  t.match(await sock.emitWithAck('subscribe', { channel: 'presence-scoped', auth: { headers: { 'X-CSRF-TOKEN': 'csrf-123' } } }), { ok: false, error: { code: 'auth_failed', message: /may not contain " @"/ } }, 'channel_data.user_id with the app separator: refused');

  // A 64-bit integer member id keeps its digits, in either form of channel_data.
  for (const [room, id, name] of [['big', '12345678901234567891', 'Snow'], ['big2', '12345678901234567892', 'Flake']]) {
    t.same(await once((cb) => e.join(room!).here(cb)), [{ name }], `presence-${room} joined`);
    t.same((await api(s.http, `/api/channels/presence-${room}/users`)).body, { users: [{ user_id: id, user_info: { name } }] }, `presence-${room}: the member is ${id}, not a rounded id`);
  }

  // no endpoint answer at all
  const dead = await startServer(t, { authEndpoint: 'http://127.0.0.1:9/broadcasting/auth' });
  const d = echo(t, dead.http);
  await connected(d);
  t.match(await socketOf(d).emitWithAck('subscribe', { channel: 'private-x', auth: { headers: {} } }), { ok: false, error: { code: 'auth_unavailable' } }, 'unreachable endpoint: auth_unavailable');
});

t.test('Echo re-subscribes after the server restarts', async (t) => {
  const port = await freePort();
  const s = await startServer(t, { port });
  const e = echo(t, s.http, { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200, timeout: 1000, transports: ['websocket'], auth: { headers: { Authorization: `Bearer ${token('1', 'Ann')}` } } });
  await connected(e);
  const first = once((cb) => e.channel('news').listen('.tick', cb));
  const privFirst = once((cb) => e.private('inbox.1').listen('.note', cb));
  await subscribers(s.http, 'news', 1);
  await subscribers(s.http, 'private-inbox.1', 1);
  await api(s.http, '/api/publish', { channel: 'news', event: 'tick', data: 1 });
  await api(s.http, '/api/publish', { channel: 'private-inbox.1', event: 'note', data: 'a' });
  t.equal(await first, 1);
  t.equal(await privFirst, 'a');
  const sock = socketOf(e);
  const reconnected = nextEvent(sock.io as never, 'reconnect', () => true, 15000);
  await s.close();
  const s2 = await startServer(t, { port });
  await reconnected;
  await subscribers(s2.http, 'news', 1);
  await subscribers(s2.http, 'private-inbox.1', 1);
  const ticks: unknown[] = [];
  e.channel('news').listen('.tick', (d: unknown) => ticks.push(d));
  const note = once((cb) => e.private('inbox.1').listen('.note', cb));
  await api(s2.http, '/api/publish', { channel: 'news', event: 'tick', data: 2 });
  await api(s2.http, '/api/publish', { channel: 'private-inbox.1', event: 'note', data: 'b' });
  t.equal(await note, 'b', 'private channel re-subscribed (token re-sent)');
  while (!ticks.includes(2)) await new Promise((r) => setTimeout(r, 10));
  t.pass('public channel re-subscribed');
});
