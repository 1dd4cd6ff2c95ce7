// Socket.IO connection state recovery with the official socket.io-client: a client that loses its
// connection and comes back within the window gets what it missed — in order, without duplicates —
// its socket id, data and channels back, and `socket.recovered === true`; when that is impossible it
// is told (`recovered === false`). Two shards, real transport losses and a real shard crash.
import t from 'tap';
import { io, Manager, type Socket } from 'socket.io-client';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { nextEvent } from './helpers/sio.js';
import { until } from './helpers/redis.js';
import { ownerOf } from '../src/runtime/hash.js';

const ACTORS = new URL('./fixtures/socketio-actors', import.meta.url).pathname;

/** Connects a reconnecting client and records every `seq` delivery per channel. */
async function client(t: { teardown(fn: () => unknown): void }, url: string, opts: Record<string, unknown> = {}): Promise<{ c: Socket; seen: Map<string, number[]> }> {
  const c = io(url, { forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 200, timeout: 5000, ...opts });
  t.teardown(() => c.close());
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  const seen = new Map<string, number[]>();
  c.on('seq', (ch: string, n: number) => {
    if (!seen.has(ch)) seen.set(ch, []);
    seen.get(ch)!.push(n);
  });
  return { c, seen };
}

const publish = (base: string, channel: string, data: unknown, event = 'seq') => api(base, '/api/publish', { channel, event, data });

/**
 * Loses the client's connection as a network failure does: a WebSocket's TCP connection is destroyed
 * under it; a polling client stops answering pings (its requests go nowhere), so the server ends the
 * session on ping timeout.
 */
function cut(c: Socket): void {
  const engine = c.io.engine as unknown as { transport: { ws?: { _socket?: { destroy(): void } } }; _sendPacket(type: string, ...rest: unknown[]): void };
  if (engine.transport.ws?._socket) return engine.transport.ws._socket.destroy();
  const send = engine._sendPacket;
  engine._sendPacket = function (type: string, ...rest: unknown[]) {
    if (type !== 'pong') send.call(this, type, ...rest);
  };
}

function reconnected(c: Socket): Promise<void> {
  return new Promise((resolve) => c.once('connect', () => resolve()));
}

t.test('a transport loss: missed publications on every channel come back, in order, once; id, data and channels too', async (t) => {
  const s = await startServer(t, { actors: ACTORS, socketioPingInterval: '300ms', socketioPingTimeout: '300ms' });
  for (const transports of [['websocket'], ['polling']]) {
    const { c, seen } = await client(t, s.http, { transports });
    const channels = ['r-alpha', 'r-beta', 'r-gamma'];
    for (const ch of channels) t.same(await c.emitWithAck('subscribe', { channel: ch }), { ok: true });
    await c.emitWithAck('remember', { who: transports[0] });
    for (let i = 0; i < 3; i++) for (const ch of channels) await publish(s.http, ch, i);
    await until('first publications', () => channels.every((ch) => seen.get(ch)?.length === 3));
    const id = c.id;
    const gone = new Promise((r) => c.once('disconnect', r));
    const back = reconnected(c);
    cut(c);
    await gone;
    // Published while the client is away (or, if it is already back, delivered live: either way exactly once).
    for (let i = 3; i < 8; i++) for (const ch of channels) await publish(s.http, ch, i);
    await back;
    t.equal(c.recovered, true, `${transports[0]}: socket.recovered`);
    t.equal(c.id, id, 'the same socket id');
    t.same(await c.emitWithAck('recall'), { who: transports[0] }, 'connection data came back');
    for (const ch of channels) await publish(s.http, ch, 8);
    await until('every publication', () => channels.every((ch) => seen.get(ch)?.at(-1) === 8));
    for (const ch of channels) t.same(seen.get(ch), [0, 1, 2, 3, 4, 5, 6, 7, 8], `${transports[0]} ${ch}: all of it, in order, once`);
    const who = await c.emitWithAck('whoami');
    t.same(who.channels.sort(), channels, 'channels came back');
    // Subscribing again (as laravel-echo does after a reconnect) is fine and does not duplicate anything.
    t.same(await c.emitWithAck('subscribe', { channel: 'r-alpha' }), { ok: true });
    await publish(s.http, 'r-alpha', 9);
    await until('after resubscribe', () => seen.get('r-alpha')?.at(-1) === 9);
    t.same(seen.get('r-alpha')!.slice(-2), [8, 9]);
    c.close();
  }
});

t.test('a shard crash: the client reconnects to a live shard and recovers the channels whose history survived', async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  const { c, seen } = await client(t, s.http, { transports: ['websocket'] });
  const shard = Number(c.id!.split('.')[0]);
  // A channel owned by the other shard keeps its history across the crash.
  let ch = 'crash-0';
  for (let i = 1; ownerOf(ch, 2) === shard; i++) ch = `crash-${i}`;
  t.same(await c.emitWithAck('subscribe', { channel: ch }), { ok: true });
  for (let i = 0; i < 3; i++) await publish(s.http, ch, i);
  await until('before the crash', () => seen.get(ch)?.length === 3);
  const gone = new Promise((r) => c.once('disconnect', r));
  const back = reconnected(c);
  s.crashShard(shard);
  await gone;
  // In-process publishes (server.publish): an HTTP request caught by the crash could not tell
  // whether it was published, and retrying it would publish twice.
  for (let i = 3; i < 6; i++) await s.publish(ch, 'seq', i);
  await back;
  t.equal(c.recovered, true, 'socket.recovered after the crash');
  await s.publish(ch, 'seq', 6);
  await until('after the crash', () => seen.get(ch)?.at(-1) === 6);
  t.same(seen.get(ch), [0, 1, 2, 3, 4, 5, 6], 'all of it, in order, once');
});

t.test('when history no longer covers the gap, the client is told: recovered === false, fresh socket', async (t) => {
  const s = await startServer(t, { actors: ACTORS, historySize: 3 });
  const { c, seen } = await client(t, s.http, { transports: ['websocket'] });
  t.same(await c.emitWithAck('subscribe', { channel: 'short' }), { ok: true });
  await publish(s.http, 'short', 0);
  await until('first', () => seen.get('short')?.length === 1);
  const id = c.id;
  // Reconnection is held until the gap is larger than the history.
  c.io.reconnection(false);
  const gone = new Promise((r) => c.once('disconnect', r));
  cut(c);
  await gone;
  for (let i = 1; i < 10; i++) await publish(s.http, 'short', i);
  c.connect();
  await reconnected(c);
  t.equal(c.recovered, false, 'socket.recovered is false');
  t.not(c.id, id, 'a new socket id');
  t.same((await c.emitWithAck('whoami')).channels, [], 'no channels: the client subscribes again');
});

t.test('recovery off: no pid, no offsets; an unknown pid or a hostile offset is a fresh socket', async (t) => {
  const off = await startServer(t, { actors: ACTORS, socketioRecovery: 0 });
  const { c, seen } = await client(t, off.http, { transports: ['websocket'] });
  await c.emitWithAck('subscribe', { channel: 'plain' });
  const got = nextEvent(c, 'seq');
  await publish(off.http, 'plain', 1);
  t.same(await got, ['plain', 1], 'exactly (channel, data)');
  t.ok(seen);
  const on = await startServer(t, { actors: ACTORS });
  for (const auth of [{ pid: 'nope', offset: 'x~1' }, { pid: 'a'.repeat(500), offset: 5 }, { pid: {}, offset: '0.000000000000~99999999999999999' }]) {
    const h = io(on.http, { forceNew: true, transports: ['websocket'], auth, reconnection: false });
    t.teardown(() => h.close());
    await new Promise<void>((resolve, reject) => (h.once('connect', () => resolve()), h.once('connect_error', reject)));
    t.equal(h.recovered, false, `auth ${JSON.stringify(auth).slice(0, 60)}: fresh socket`);
    t.same(await h.emitWithAck('echo', 'still works'), ['still works']);
    h.close();
  }
});

t.test('a polling client that closes its own transport (its ping timeout, the browser going offline) recovers; socket.disconnect() does not', async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  const { c, seen } = await client(t, s.http, { transports: ['polling'] });
  t.same(await c.emitWithAck('subscribe', { channel: 'offline' }), { ok: true });
  await publish(s.http, 'offline', 0);
  await until('first publication', () => seen.get('offline')?.length === 1);
  const id = c.id;
  const back = reconnected(c);
  // engine.io-client's own close: over polling it sends the Engine.IO close packet, as on a ping timeout or `offline`.
  c.io.engine.close();
  await publish(s.http, 'offline', 1);
  await back;
  t.equal(c.recovered, true, 'socket.recovered');
  t.equal(c.id, id, 'the same socket id');
  await publish(s.http, 'offline', 2);
  await until('after recovery', () => seen.get('offline')?.at(-1) === 2);
  t.same(seen.get('offline'), [0, 1, 2], 'all of it, in order, once');
  // Leaving on purpose sends Socket.IO's DISCONNECT first: nothing is saved.
  c.disconnect();
  c.connect();
  await reconnected(c);
  t.equal(c.recovered, false, 'after socket.disconnect(): a fresh socket');
  t.not(c.id, id);
});

/** Resolves once Date.now() has moved past its value now: consecutive publications get distinct milliseconds. */
async function nextMillisecond(): Promise<void> {
  const t0 = Date.now();
  while (Date.now() === t0) await new Promise((r) => setImmediate(r));
}

t.test('missed publications of several channels come back in the order they were published', async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  // Two channels owned by different shards, so their histories come from two threads.
  const a = 'order-a';
  let b = 'order-b';
  for (let i = 0; ownerOf(b, 2) === ownerOf(a, 2); i++) b = `order-b${i}`;
  const { c } = await client(t, s.http, { transports: ['websocket'] });
  const log: string[] = [];
  c.on('seq', (ch: string, n: number) => log.push(`${ch}:${n}`));
  for (const ch of [a, b]) t.same(await c.emitWithAck('subscribe', { channel: ch }), { ok: true });
  await publish(s.http, a, 0);
  await until('the first publication', () => log.length === 1);
  // Kept away while the server publishes: no automatic reconnection until asked.
  c.io.reconnection(false);
  const gone = new Promise((r) => c.once('disconnect', r));
  cut(c);
  await gone;
  const order = [a, b, b, a, b, a, a, b];
  const expected = ['order-a:0'];
  for (const [i, ch] of order.entries()) {
    await nextMillisecond();
    await publish(s.http, ch, i + 1);
    expected.push(`${ch}:${i + 1}`);
  }
  const back = reconnected(c);
  c.connect();
  await back;
  t.equal(c.recovered, true, 'recovered');
  // A sentinel on each channel after the replay: everything before it has arrived.
  await publish(s.http, a, 100);
  await publish(s.http, b, 101);
  await until('the sentinels', () => log.includes(`${b}:101`) && log.includes(`${a}:100`));
  t.same(log.slice(0, expected.length), expected, 'the missed publications, interleaved as published');
  t.same(log.slice(expected.length), [`${a}:100`, `${b}:101`], 'then the live ones, once');
});

t.test("a client cut again before a recovery's replay reached it recovers from the offset it still has, whichever shard each try lands on", async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  const { c, seen } = await client(t, s.http, { transports: ['websocket'], reconnection: false });
  t.same(await c.emitWithAck('subscribe', { channel: 'again' }), { ok: true });
  await publish(s.http, 'again', 0);
  await until('the first publication', () => seen.get('again')?.length === 1);
  const state = c as unknown as { _pid?: string; _lastOffset?: string };
  const { _pid: pid, _lastOffset: offset } = state;
  t.ok(pid && offset, 'the client holds a pid and an offset');
  const id = c.id;
  let last: Socket = c;
  // Each try is a new connection (the acceptor hands them to the shards in turn); each comes back with
  // the offset of publication 0, as a client does whose every replay was cut before it arrived.
  for (let k = 1; k <= 4; k++) {
    const gone = new Promise((r) => last.once('disconnect', r));
    cut(last);
    await gone;
    last.close();
    await publish(s.http, 'again', k);
    const b = io(s.http, { forceNew: true, autoConnect: false, reconnection: false, transports: ['websocket'] });
    t.teardown(() => b.close());
    Object.assign(b, { _pid: pid, _lastOffset: offset });
    const got: number[] = [];
    const marks: number[] = [];
    b.on('seq', (ch: string, n: number) => ch === 'again' && got.push(n));
    b.on('mark', (ch: string, n: number) => ch === 'again' && marks.push(n));
    await new Promise<void>((resolve, reject) => (b.once('connect', () => resolve()), b.once('connect_error', reject), b.connect()));
    t.equal(b.recovered, true, `try ${k}: recovered`);
    t.equal(b.id, id, `try ${k}: the same socket id`);
    // A sentinel after the replay: every replayed publication has arrived before it.
    await publish(s.http, 'again', k, 'mark');
    await until(`try ${k}: the sentinel`, () => marks.includes(k));
    t.same(got, Array.from({ length: k }, (_, i) => i + 1), `try ${k}: everything after publication 0, in order, once`);
    last = b;
  }
});

t.test("what live delivery kept from a socket (a publish with its socket_id, its own whispers) recovery does not replay", async (t) => {
  const s = await startServer(t, { socketioPingInterval: '300ms', socketioPingTimeout: '300ms' });
  const tok = signJwt({ sub: 'u1', channels: ['private-*'], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
  for (const transports of [['websocket'], ['polling']]) {
    const ch = `private-ex-${transports[0]}`;
    const { c } = await client(t, s.http, { transports, auth: { token: tok } });
    const got: unknown[] = [];
    c.on('e', (channel: string, d: unknown) => channel === ch && got.push(d));
    c.on('client-typing', (channel: string, d: unknown) => channel === ch && got.push(d));
    t.same(await c.emitWithAck('subscribe', { channel: ch }), { ok: true });
    await publish(s.http, ch, 'A', 'e');
    await until('A', () => got.includes('A'));
    // Nothing the socket receives follows A before the cut, so its recovery replays `ch` from A on.
    t.equal((await api(s.http, '/api/publish', { channel: ch, event: 'e', data: 'B: not to this socket', socket_id: c.id })).status, 200);
    t.same(await c.emitWithAck('client event', { channel: ch, event: 'client-typing', data: 'its own whisper' }), { ok: true });

    const gone = new Promise((r) => c.once('disconnect', r));
    const back = reconnected(c);
    cut(c);
    await gone;
    await publish(s.http, ch, 'D', 'e');
    await back;
    t.equal(c.recovered, true, `${transports[0]}: recovered`);
    await publish(s.http, ch, 'E', 'e');
    await until('E', () => got.includes('E'));
    t.same(got, ['A', 'D', 'E'], `${transports[0]}: B and the whisper were not replayed`);
    c.close();
  }
});

t.test("a pid presented to another namespace leaves the session it belongs to for its own namespace", async (t) => {
  const s = await startServer(t, { socketioNamespaces: ['/', '/chat'], socketioPingInterval: '300ms', socketioPingTimeout: '300ms' });
  const { c, seen } = await client(t, s.http, { transports: ['websocket'], reconnection: false });
  t.same(await c.emitWithAck('subscribe', { channel: 'cross-ns' }), { ok: true });
  await publish(s.http, 'cross-ns', 1);
  await until('the first publication', () => seen.get('cross-ns')?.length === 1);
  const pid = (c as unknown as { _pid: string })._pid;
  t.type(pid, 'string', 'the socket has a pid');
  const gone = new Promise((r) => c.once('disconnect', r));
  cut(c);
  await gone;
  await publish(s.http, 'cross-ns', 2);

  const other = io(`${s.http}/chat`, { forceNew: true, transports: ['websocket'], reconnection: false, auth: { pid } });
  t.teardown(() => other.close());
  await new Promise<void>((resolve, reject) => (other.once('connect', () => resolve()), other.once('connect_error', reject)));
  t.equal(other.recovered, false, '/chat: a fresh socket, not the / session');

  const back = reconnected(c);
  c.connect();
  await back;
  t.equal(c.recovered, true, '/: the session is still there for its own namespace');
  await until('the missed publication', () => seen.get('cross-ns')?.length === 2);
  t.same(seen.get('cross-ns'), [1, 2], 'with what it missed');
});

t.test('two namespaces on one connection, cut again as soon as the first CONNECT is answered: the other recovers too, and its presence member never leaves', async (t) => {
  const s = await startServer(t, { socketioNamespaces: ['/', '/chat'] });
  const tok = (sub: string) => signJwt({ sub, channels: ['presence-*'], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
  const m = new Manager(s.http, { transports: ['websocket'], reconnectionDelay: 20, reconnectionDelayMax: 100, timeout: 5000 });
  const a = m.socket('/', { auth: { token: tok('alice') } });
  const b = m.socket('/chat', { auth: { token: tok('alice') } });
  t.teardown(() => (a.close(), b.close()));
  await Promise.all([a, b].map((x) => new Promise((r) => x.once('connect', r))));
  const observer = (await client(t, s.http, { transports: ['websocket'], auth: { token: tok('bob') } })).c;
  const seen: Record<string, unknown[]> = { 'two-a': [], 'two-b': [] };
  a.on('seq', (ch: string, n: unknown) => seen[ch]?.push(n));
  b.on('seq', (ch: string, n: unknown) => seen[ch]?.push(n));
  const presence: string[] = [];
  observer.on('presence:joining', (_ch: string, mem: { user_id: string }) => presence.push(`join ${mem.user_id}`));
  observer.on('presence:leaving', (_ch: string, mem: { user_id: string }) => presence.push(`leave ${mem.user_id}`));
  t.same(await observer.emitWithAck('subscribe', { channel: 'presence-two' }), { ok: true });
  for (const [x, ch] of [[a, 'two-a'], [b, 'two-b']] as const) {
    t.same(await x.emitWithAck('subscribe', { channel: 'presence-two' }), { ok: true });
    t.same(await x.emitWithAck('subscribe', { channel: ch }), { ok: true });
  }
  await until("alice's join", () => presence.includes('join alice'));
  const kill = () => (m.engine.transport as unknown as { ws?: { _socket?: { destroy(): void } } }).ws?._socket?.destroy();
  const ROUNDS = 20;
  let notRecovered = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const backA = new Promise((r) => a.once('connect', r));
    const backB = new Promise((r) => b.once('connect', r));
    kill();
    // The first namespace answered; the other's recovery may still be on its way (another shard's session).
    await Promise.race([backA, backB]);
    kill();
    await Promise.all([backA, backB]);
    await Promise.all([a, b].map((x) => (x.connected ? undefined : new Promise((r) => x.once('connect', r)))));
    if (!a.recovered || !b.recovered) {
      notRecovered++;
      break;
    }
    await s.publish('two-a', 'seq', i);
    await s.publish('two-b', 'seq', i);
    await until(`round ${i}: both namespaces live`, () => seen['two-a']!.includes(i) && seen['two-b']!.includes(i));
  }
  t.equal(notRecovered, 0, `every reconnect of both namespaces recovered (${ROUNDS} rounds)`);
  const all = Array.from({ length: ROUNDS }, (_, i) => i);
  t.same(seen['two-a'], all, '/: every publication, once');
  t.same(seen['two-b'], all, '/chat: every publication, once');
  // A sentinel member joining after the cuts: what the observer saw before it has arrived.
  await client(t, s.http, { transports: ['websocket'], auth: { token: tok('carol') } }).then(({ c }) => c.emitWithAck('subscribe', { channel: 'presence-two' }));
  await until("carol's join", () => presence.includes('join carol'));
  t.same(presence, ['join alice', 'join carol'], 'alice was never seen leaving or joining again');
});

t.test('after a recovery that failed (its channel died with a crashed shard), the next cut recovers though nothing arrived in between', async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  const { c, seen } = await client(t, s.http, { transports: ['websocket'] });
  const shard = Number(c.id!.split('.')[0]);
  // A channel the crashed shard owns: its history dies with it, so the first reconnect cannot recover.
  let ch = 'quiet-0';
  for (let i = 1; ownerOf(ch, 2) !== shard; i++) ch = `quiet-${i}`;
  t.same(await c.emitWithAck('subscribe', { channel: ch }), { ok: true });
  await publish(s.http, ch, 0);
  await until('before the crash', () => seen.get(ch)?.length === 1);
  let gone = new Promise((r) => c.once('disconnect', r));
  let back = reconnected(c);
  s.crashShard(shard);
  await gone;
  await back;
  t.equal(c.recovered, false, 'the channel died with its shard: recovered === false');
  t.same(await c.emitWithAck('subscribe', { channel: ch }), { ok: true }, 'subscribed again, as the docs say');
  // A quiet channel: nothing reaches the client before the next loss, so it still holds the offset the
  // crashed thread gave it.
  gone = new Promise((r) => c.once('disconnect', r));
  back = reconnected(c);
  cut(c);
  await gone;
  await s.publish(ch, 'seq', 1);
  await back;
  t.equal(c.recovered, true, 'the next transport loss is recovered');
  await s.publish(ch, 'seq', 2);
  await until('the live publication', () => seen.get(ch)?.includes(2));
  t.same(seen.get(ch), [0, 1, 2], 'the publication missed during the second loss came back, once');
});

/**
 * The client's listener for the server's `question`: it answers `first` only once the connection was
 * lost (a user still deciding), and any later question at once, after the late answer to `first`.
 * Returns the answers it holds.
 */
function lateAnswerer(c: Socket): Array<(a: unknown) => void> {
  const pending: Array<(a: unknown) => void> = [];
  c.on('question', (q: string, cb: (a: unknown) => void) => {
    if (q === 'first') return void pending.push(cb);
    for (const late of pending.splice(0)) late('late answer to first');
    cb(`answer to ${q}`);
  });
  return pending;
}

t.test("a late answer to the previous connection's emitWithAck does not answer the recovered socket's", async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  for (const transports of [['websocket'], ['polling', 'websocket']]) {
    const { c } = await client(t, s.http, { transports });
    const pending = lateAnswerer(c);
    const first = c.timeout(10_000).emitWithAck('ask', 'first').catch((e: Error) => e);
    await until('the first question reached the client', () => pending.length === 1);
    const gone = new Promise((r) => c.once('disconnect', r));
    const back = reconnected(c);
    cut(c);
    await gone;
    t.ok((await first) instanceof Error, `${transports.join('+')}: the first ask failed with the connection`);
    await back;
    t.equal(c.recovered, true);
    t.same(await c.emitWithAck('ask', 'second'), { answer: 'answer to second' }, `${transports.join('+')}: the second ask got its own answer`);
    c.close();
  }
});

t.test("without recovery too: a late answer to the previous connection's emitWithAck does not answer the fresh socket's", async (t) => {
  const s = await startServer(t, { actors: ACTORS, socketioRecovery: '0' });
  const { c } = await client(t, s.http, { transports: ['websocket'] });
  const pending = lateAnswerer(c);
  const first = c.timeout(10_000).emitWithAck('ask', 'first').catch((e: Error) => e);
  await until('the first question reached the client', () => pending.length === 1);
  const back = reconnected(c);
  cut(c);
  t.ok((await first) instanceof Error, 'the first ask failed with the connection');
  await back;
  t.same(await c.emitWithAck('ask', 'second'), { answer: 'answer to second' }, 'the second ask got its own answer');
});
