// A presence member whose Socket.IO connection drops — a network failure, not a goodbye — stays in the
// channel for --socketio-presence-grace (default 15 s, at most the recovery window): a client that
// recovers its session within it is neither seen leaving nor joining again by the other members; one
// that does not come back leaves when the grace runs out; one that disconnects itself leaves at once
// (sooner than the default grace: the test waits 5 s for it).
// Before, every recovered reconnect showed the others a leave and a join.
import t from 'tap';
import { io, type Socket } from 'socket.io-client';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET, startServer } from './helpers/server.js';
import { nextEvent, sioConnect } from './helpers/sio.js';
import { until } from './helpers/redis.js';
import { channelOwnedBy } from './helpers/faults.js';

const token = (sub: string): string => signJwt({ sub, channels: ['presence-*'], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
const ROOM = 'presence-room';
type T = { teardown(fn: () => unknown): void; same(a: unknown, b: unknown, msg?: string): void };

/** An observer that records every presence event of the room, in order. */
async function observer(t: T, url: string, room = ROOM): Promise<{ s: Socket; events: string[] }> {
  const s = await sioConnect(t, url, { transports: ['websocket'], auth: { token: token('watcher') } });
  const events: string[] = [];
  s.on('presence:joining', (_ch: string, m: { user_id: string }) => events.push(`join ${m.user_id}`));
  s.on('presence:leaving', (_ch: string, m: { user_id: string }) => events.push(`leave ${m.user_id}`));
  t.same(await s.emitWithAck('subscribe', { channel: room }), { ok: true }, 'the observer is in the room');
  return { s, events };
}

/** Subscribes `c` as `user` and waits until the observer has seen it join. */
async function subscribeSeen(t: T, o: { s: Socket }, c: Socket, user: string, room = ROOM): Promise<void> {
  const joined = nextEvent(o.s, 'presence:joining', (_ch: string, m: { user_id: string }) => m.user_id === user, 10_000);
  t.same(await c.emitWithAck('subscribe', { channel: room }), { ok: true }, `${user} subscribed`);
  await joined;
}

/** The sentinel: a later member's join, seen by the observer after any presence event before it. */
async function lateJoin(t: T, url: string, o: { s: Socket }, room = ROOM): Promise<void> {
  await subscribeSeen(t, o, await member(t, url, 'u3', { reconnection: false }), 'u3', room);
}

/** Loses the WebSocket's TCP connection under the client, as a network failure does. */
function cut(c: Socket): void {
  (c.io.engine as unknown as { transport: { ws: { _socket: { destroy(): void } } } }).transport.ws._socket.destroy();
}

async function member(t: T, url: string, user: string, opts: { reconnection: boolean; transports?: string[] }): Promise<Socket> {
  const c = io(url, { forceNew: true, transports: opts.transports ?? ['websocket'], reconnection: opts.reconnection, reconnectionDelay: 50, reconnectionDelayMax: 200, timeout: 5000, auth: { token: token(user) } });
  t.teardown(() => c.close());
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  return c;
}

const users = async (http: string): Promise<string[]> => ((await api(http, `/api/channels/${ROOM}/users`)).body.users as { user_id: string }[]).map((u) => u.user_id).sort();

t.test('a member whose connection drops and is recovered is neither seen leaving nor joining again', async (t) => {
  const s = await startServer(t, { socketioPingInterval: '300ms', socketioPingTimeout: '300ms' });
  const o = await observer(t, s.http);
  const c = await member(t, s.http, 'u1', { reconnection: true });
  await subscribeSeen(t, o, c, 'u1');

  const back = new Promise<void>((resolve) => c.once('connect', () => resolve()));
  cut(c);
  await back;
  t.equal(c.recovered, true, 'the session was recovered');
  await lateJoin(t, s.http, o);
  t.same(o.events, ['join u1', 'join u3'], 'the observer saw u1 join once and never leave');
  t.same(await users(s.http), ['u1', 'u3', 'watcher'], 'u1 is a member');

  // The recovered socket is the member now: when it says goodbye, u1 leaves at once.
  const left = nextEvent(o.s, 'presence:leaving', (_ch: string, m: { user_id: string }) => m.user_id === 'u1');
  c.disconnect();
  await left;
  t.same(await users(s.http), ['u3', 'watcher'], 'u1 left');
});

t.test('a polling member back before the server noticed it was gone takes its session over without a leave', async (t) => {
  const s = await startServer(t);
  const o = await observer(t, s.http);
  const c = await member(t, s.http, 'u1', { reconnection: true, transports: ['polling'] });
  await subscribeSeen(t, o, c, 'u1');
  // The client drops its transport without telling the server (no close packet; pings every 25 s).
  const transport = c.io.engine.transport as unknown as { doClose(): void };
  transport.doClose = () => {};
  const back = new Promise<void>((resolve) => c.once('connect', () => resolve()));
  c.io.engine.close();
  await back;
  t.equal(c.recovered, true, 'the session was taken over');
  await lateJoin(t, s.http, o);
  t.same(o.events, ['join u1', 'join u3'], 'the observer saw u1 join once and never leave');
});

t.test("a member whose shard crashed recovers on a live shard without being seen leaving", async (t) => {
  const s = await startServer(t, { socketioPingInterval: '300ms', socketioPingTimeout: '300ms' });
  // Reconnected by hand, once the owner no longer counts the crashed shard's subscriber: the member is
  // still there then (the owner's crash handling keeps the crashed shard's members until they are
  // reported again or settled gone), and comes back without a leave.
  const c = await member(t, s.http, 'u1', { reconnection: false });
  const shard = Number(c.id!.split('.')[0]);
  // The channel's owner survives the crash (a crashed owner's actor starts again from what the others report).
  const room = channelOwnedBy('presence-crash-', 1 - shard, 2);
  const o = await observer(t, s.http, room);
  await subscribeSeen(t, o, c, 'u1', room);

  const gone = new Promise((r) => c.once('disconnect', r));
  s.crashShard(shard);
  await gone;
  await until("the owner dropped the crashed shard's subscriber", async () => (await api(s.http, `/api/channels/${room}`)).body.subscribers === 1);
  t.same((await api(s.http, `/api/channels/${room}/users`)).body.users.map((u: { user_id: string }) => u.user_id).sort(), ['u1', 'watcher'], 'u1 is still a member');
  const back = new Promise<void>((resolve) => c.once('connect', () => resolve()));
  c.connect();
  await back;
  t.equal(c.recovered, true, 'recovered on a live shard');
  await lateJoin(t, s.http, o, room);
  t.same(o.events, ['join u1', 'join u3'], 'the crash showed no leave and no second join of u1');
});

t.test('a member that does not come back leaves when its grace runs out', async (t) => {
  const s = await startServer(t, { socketioPingInterval: '300ms', socketioPingTimeout: '300ms', socketioPresenceGrace: '3s' });
  const o = await observer(t, s.http);
  const c = await member(t, s.http, 'u1', { reconnection: false });
  await subscribeSeen(t, o, c, 'u1');

  const left = nextEvent(o.s, 'presence:leaving', (_ch: string, m: { user_id: string }) => m.user_id === 'u1', 10_000);
  cut(c);
  // The server has ended the socket (the room counts one subscriber) while u1 is still a member.
  await until('the dropped socket is unsubscribed', async () => (await api(s.http, `/api/channels/${ROOM}`)).body.subscribers === 1);
  const during = await users(s.http);
  await left;
  t.same(during, ['u1', 'watcher'], 'u1 stayed a member during its grace');
  t.same(await users(s.http), ['watcher'], 'then left');
  t.same(o.events, ['join u1', 'leave u1'], 'the observer saw one leave');
});

t.test('--socketio-presence-grace=0: a dropped member leaves at once', async (t) => {
  const s = await startServer(t, { socketioPingInterval: '300ms', socketioPingTimeout: '300ms', socketioPresenceGrace: 0 });
  const o = await observer(t, s.http);
  const c = await member(t, s.http, 'u1', { reconnection: false });
  await subscribeSeen(t, o, c, 'u1');
  const left = nextEvent(o.s, 'presence:leaving', (_ch: string, m: { user_id: string }) => m.user_id === 'u1');
  cut(c);
  await left;
  t.same(await users(s.http), ['watcher'], 'u1 left');
});
