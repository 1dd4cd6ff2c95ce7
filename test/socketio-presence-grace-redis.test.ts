// --socketio-presence-grace across hosts (Redis): a member whose connection to host A drops and whose
// session is recovered on host B (a load balancer sent the reconnect there) is neither seen leaving nor
// joining again; A lets its share of the member go as soon as B recovered it, so a goodbye on B is seen
// at once, not when A's grace runs out.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { nextEvent } from './helpers/sio.js';
import { balancer } from './helpers/balancer.js';
import { dropNamespace, machineRedis, metric, redisCall, redisClient, startHost, until } from './helpers/redis.js';

const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const redis = await machineRedis(t);
t.teardown(() => dropNamespace(redis.port, ns));

const ROOM = 'presence-room';
const token = (sub: string, channel = ROOM): string => signJwt({ sub, channels: [channel], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
// A grace longer than any wait below: what happens within it is not the grace running out.
const ARGS = ['--socketio-ping-interval', '300ms', '--socketio-ping-timeout', '300ms', '--socketio-presence-grace', '60s'];

async function connect(t: { teardown(fn: () => unknown): void }, url: string, user: string, channel = ROOM): Promise<Socket> {
  const c = io(url, { forceNew: true, transports: ['websocket'], reconnectionDelay: 50, reconnectionDelayMax: 200, timeout: 5000, auth: { token: token(user, channel) } });
  t.teardown(() => c.close());
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  return c;
}

const joining = (s: Socket, user: string) => nextEvent(s, 'presence:joining', (_ch: string, m: { user_id: string }) => m.user_id === user, 10_000);

t.test('a member recovered on another host never leaves, and its goodbye there is seen at once', async (t) => {
  const A = await startHost(t, redis.url, ns, { workers: 1, args: ARGS });
  const B = await startHost(t, redis.url, ns, { workers: 1, args: ARGS });
  const o = await connect(t, B.http, 'watcher');
  const events: string[] = [];
  o.on('presence:joining', (_ch: string, m: { user_id: string }) => events.push(`join ${m.user_id}`));
  o.on('presence:leaving', (_ch: string, m: { user_id: string }) => events.push(`leave ${m.user_id}`));
  t.same(await o.emitWithAck('subscribe', { channel: ROOM }), { ok: true }, 'the observer is in the room on B');

  const lb = await balancer(t, A.port);
  const c = await connect(t, `http://127.0.0.1:${lb.port}`, 'u1');
  const joined = joining(o, 'u1');
  t.same(await c.emitWithAck('subscribe', { channel: ROOM }), { ok: true }, 'u1 subscribed on A');
  await joined;

  // The connection to A drops; the reconnect goes to B.
  lb.to(B.port);
  const back = new Promise<void>((resolve) => c.once('connect', () => resolve()));
  (c.io.engine as unknown as { transport: { ws: { _socket: { destroy(): void } } } }).transport.ws._socket.destroy();
  await back;
  t.equal(c.recovered, true, 'recovered on B');
  // B tells the other hosts: A lets its share of u1 go at once (B holds it now), without a leave.
  const hostsHolding = async (): Promise<number> => ((await redisCall(redis.port, 'HKEYS', `${ns}:{${ROOM}}:p`)) as string[]).filter((f) => f.endsWith('|u1')).length;
  await until("A's share of u1 is gone, long before its grace ends", async () => (await hostsHolding()) === 1);
  const late = await connect(t, A.http, 'u3');
  const sentinel = joining(o, 'u3');
  t.same(await late.emitWithAck('subscribe', { channel: ROOM }), { ok: true }, 'u3 subscribed');
  await sentinel;
  t.same(events, ['join u1', 'join u3'], 'the observer saw u1 join once and never leave');
  const users = (await api(B.http, `/api/channels/${ROOM}/users`)).body.users.map((u: { user_id: string }) => u.user_id).sort();
  t.same(users, ['u1', 'u3', 'watcher'], 'u1 is a member');

  // Hostile or pointless `stayed` control messages: counted and dropped, or no-ops (a member that is
  // connected is in no grace); nobody leaves.
  const before = await Promise.all([A, B].map((h) => metric(h, 'rt_redis_invalid_messages_total')));
  for (const bad of ['{"t":"stayed","m":"x"}', '{"t":"stayed","m":[[1,2]]}', '{"t":"stayed","m":[["presence-room"]]}', '{"t":"stayed"}']) await redisCall(redis.port, 'PUBLISH', `${ns}:ctl`, bad);
  await redisCall(redis.port, 'PUBLISH', `${ns}:ctl`, JSON.stringify({ t: 'stayed', m: [[ROOM, 'watcher'], [ROOM, 'u3'], ['presence-elsewhere', 'u1']] }));
  for (const [i, h] of [A, B].entries()) await until(`host ${i} counts the malformed ones`, async () => (await metric(h, 'rt_redis_invalid_messages_total')) >= before[i]! + 4);
  t.same((await api(A.http, `/api/channels/${ROOM}/users`)).body.users.map((u: { user_id: string }) => u.user_id).sort(), ['u1', 'u3', 'watcher'], 'nobody left');

  // Its goodbye on B is a leave at once, not one held until A's grace ran out.
  const left = nextEvent(o, 'presence:leaving', (_ch: string, m: { user_id: string }) => m.user_id === 'u1', 10_000);
  c.disconnect();
  await left;
  t.same(events, ['join u1', 'join u3', 'leave u1'], 'u1 left once, when it said goodbye');
});

t.test('a session recovered on the host that saved it tells no other host', async (t) => {
  // Its own owner saw the subscribe, so a `stayed` notice would be a Redis PUBLISH per recovery for nothing.
  // A room of its own: the first test's watcher, on a host stopped in its teardown, may still be leaving ROOM.
  const room = 'presence-recovered-here';
  const A = await startHost(t, redis.url, ns, { workers: 2, args: ARGS });
  const ctl: string[] = [];
  const sub = redisClient(t, redis.port);
  sub.on('message', (_ch: string, msg: string) => ctl.push(msg));
  await sub.subscribe(`${ns}:ctl`);
  const c = await connect(t, A.http, 'u5', room);
  t.same(await c.emitWithAck('subscribe', { channel: room }), { ok: true }, 'u5 subscribed on A');
  for (let i = 0; i < 3; i++) {
    const back = new Promise<void>((resolve) => c.once('connect', () => resolve()));
    (c.io.engine as unknown as { transport: { ws: { _socket: { destroy(): void } } } }).transport.ws._socket.destroy();
    await back;
    t.equal(c.recovered, true, `recovery ${i + 1} on A (either shard)`);
  }
  // A sentinel published after the recoveries: whatever they published arrived before it.
  await redisCall(redis.port, 'PUBLISH', `${ns}:ctl`, '{"t":"sentinel"}');
  await until('the sentinel arrives', () => ctl.includes('{"t":"sentinel"}'));
  t.same(ctl.filter((m) => m.includes('stayed')), [], 'no stayed notice');
  const users = (await api(A.http, `/api/channels/${room}/users`)).body.users.map((u: { user_id: string }) => u.user_id);
  t.same(users, ['u5'], 'u5 is still the one member');
});

t.test('a member of a host that shuts down (a rolling restart) and is recovered on another host is never seen leaving', async (t) => {
  const room = 'presence-deploy';
  const tokenFor = (sub: string): string => signJwt({ sub, channels: [room], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
  const A = await startHost(t, redis.url, ns, { workers: 1, args: ARGS });
  const B = await startHost(t, redis.url, ns, { workers: 1, args: ARGS });
  const o = io(B.http, { forceNew: true, transports: ['websocket'], auth: { token: tokenFor('watcher') } });
  t.teardown(() => o.close());
  const events: string[] = [];
  o.on('presence:joining', (_ch: string, m: { user_id: string }) => events.push(`join ${m.user_id}`));
  o.on('presence:leaving', (_ch: string, m: { user_id: string }) => events.push(`leave ${m.user_id}`));
  t.same(await o.emitWithAck('subscribe', { channel: room }), { ok: true }, 'the observer is in the room on B');

  const lb = await balancer(t, A.port);
  const c = io(`http://127.0.0.1:${lb.port}`, { forceNew: true, transports: ['websocket'], reconnectionDelay: 50, reconnectionDelayMax: 200, auth: { token: tokenFor('u1') } });
  t.teardown(() => c.close());
  await new Promise<void>((resolve) => c.once('connect', () => resolve()));
  const joined = nextEvent(o, 'presence:joining', (_ch: string, m: { user_id: string }) => m.user_id === 'u1', 10_000);
  t.same(await c.emitWithAck('subscribe', { channel: room }), { ok: true }, 'u1 subscribed on A');
  await joined;

  // A is stopped (SIGTERM) as in a rolling restart; the load balancer sends the reconnect to B.
  lb.to(B.port);
  const back = new Promise<void>((resolve) => c.once('connect', () => resolve()));
  await A.stop();
  await back;
  t.equal(c.recovered, true, 'recovered on B');
  const late = io(B.http, { forceNew: true, transports: ['websocket'], auth: { token: tokenFor('u3') } });
  t.teardown(() => late.close());
  const sentinel = nextEvent(o, 'presence:joining', (_ch: string, m: { user_id: string }) => m.user_id === 'u3', 10_000);
  t.same(await late.emitWithAck('subscribe', { channel: room }), { ok: true }, 'u3 subscribed');
  await sentinel;
  t.same(events, ['join u1', 'join u3'], 'the observer saw u1 join once and never leave');
  const users = (await api(B.http, `/api/channels/${room}/users`)).body.users.map((u: { user_id: string }) => u.user_id).sort();
  t.same(users, ['u1', 'u3', 'watcher'], 'u1 is a member');
});

t.test('a member of a host that shut down and does not come back leaves when its grace runs out', async (t) => {
  const room = 'presence-gone';
  const tokenFor = (sub: string): string => signJwt({ sub, channels: [room], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
  const grace = ['--socketio-ping-interval', '300ms', '--socketio-ping-timeout', '300ms', '--socketio-presence-grace', '2s'];
  const A = await startHost(t, redis.url, ns, { workers: 1, args: grace });
  const B = await startHost(t, redis.url, ns, { workers: 1, args: grace });
  const o = io(B.http, { forceNew: true, transports: ['websocket'], auth: { token: tokenFor('watcher') } });
  t.teardown(() => o.close());
  t.same(await o.emitWithAck('subscribe', { channel: room }), { ok: true }, 'the observer is in the room on B');
  const c = io(A.http, { forceNew: true, transports: ['websocket'], reconnection: false, auth: { token: tokenFor('u2') } });
  t.teardown(() => c.close());
  const joined = nextEvent(o, 'presence:joining', (_ch: string, m: { user_id: string }) => m.user_id === 'u2', 10_000);
  t.same(await c.emitWithAck('subscribe', { channel: room }), { ok: true }, 'u2 subscribed on A');
  await joined;
  const left = nextEvent(o, 'presence:leaving', (_ch: string, m: { user_id: string }) => m.user_id === 'u2', 20_000);
  await A.stop();
  await left;
  t.same((await api(B.http, `/api/channels/${room}/users`)).body.users.map((u: { user_id: string }) => u.user_id), ['watcher'], 'u2 is gone from the member list');
});

t.test('a member in its grace on a host that dies (kill -9) leaves once the host is swept', async (t) => {
  // Its connection was the channel's last on that host: the count of 0 took the channel off the node's
  // list in Redis, which is what the sweep of a dead node reads, so the member stayed listed for good.
  const room = 'presence-crashed';
  const tokenFor = (sub: string): string => signJwt({ sub, channels: [room], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
  const A = await startHost(t, redis.url, ns, { workers: 1, args: ARGS });
  const B = await startHost(t, redis.url, ns, { workers: 1, args: ARGS });
  const o = io(B.http, { forceNew: true, transports: ['websocket'], auth: { token: tokenFor('watcher') } });
  t.teardown(() => o.close());
  t.same(await o.emitWithAck('subscribe', { channel: room }), { ok: true }, 'the observer is in the room on B');
  const c = io(A.http, { forceNew: true, transports: ['websocket'], reconnection: false, auth: { token: tokenFor('u4') } });
  t.teardown(() => c.close());
  const joined = nextEvent(o, 'presence:joining', (_ch: string, m: { user_id: string }) => m.user_id === 'u4', 10_000);
  t.same(await c.emitWithAck('subscribe', { channel: room }), { ok: true }, 'u4 subscribed on A');
  await joined;
  // The connection drops (no goodbye): u4 is in its 60 s grace on A, which no longer counts a subscriber.
  (c.io.engine as unknown as { transport: { ws: { _socket: { destroy(): void } } } }).transport.ws._socket.destroy();
  await until('A to count no subscriber while u4 is still a member', async () => {
    const info = (await api(B.http, `/api/channels/${room}`)).body;
    return info.subscribers === 1 && info.presence === 2;
  });
  const left = nextEvent(o, 'presence:leaving', (_ch: string, m: { user_id: string }) => m.user_id === 'u4', 20_000);
  await A.crash();
  await left;
  t.same((await api(B.http, `/api/channels/${room}/users`)).body.users.map((u: { user_id: string }) => u.user_id), ['watcher'], 'u4 is gone from the member list');
});
