// --socketio-presence-grace across hosts (Redis): a member whose connection to host A drops and whose
// session is recovered on host B (a load balancer sent the reconnect there) is neither seen leaving nor
// joining again, also after A's grace ran out and A gave up its share of the member.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { nextEvent } from './helpers/sio.js';
import { balancer } from './helpers/balancer.js';
import { dropNamespace, machineRedis, redisCall, startHost, until } from './helpers/redis.js';

const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const redis = await machineRedis(t);
t.teardown(() => dropNamespace(redis.port, ns));

const ROOM = 'presence-room';
const token = (sub: string): string => signJwt({ sub, channels: [ROOM], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
const ARGS = ['--socketio-ping-interval', '300ms', '--socketio-ping-timeout', '300ms', '--socketio-presence-grace', '2s'];

async function connect(t: { teardown(fn: () => unknown): void }, url: string, user: string): Promise<Socket> {
  const c = io(url, { forceNew: true, transports: ['websocket'], reconnectionDelay: 50, reconnectionDelayMax: 200, timeout: 5000, auth: { token: token(user) } });
  t.teardown(() => c.close());
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  return c;
}

const joining = (s: Socket, user: string) => nextEvent(s, 'presence:joining', (_ch: string, m: { user_id: string }) => m.user_id === user, 10_000);

t.test('a member recovered on another host never leaves, also once the first host gave it up', async (t) => {
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
  // A's grace runs out: A gives up its share of u1 (one host holds it now) without a leave.
  const hostsHolding = async (): Promise<number> => ((await redisCall(redis.port, 'HKEYS', `${ns}:{${ROOM}}:p`)) as string[]).filter((f) => f.endsWith('|u1')).length;
  await until('both hosts hold u1 (A in its grace)', async () => (await hostsHolding()) === 2);
  await until("A's share of u1 is gone", async () => (await hostsHolding()) === 1);
  const late = await connect(t, A.http, 'u3');
  const sentinel = joining(o, 'u3');
  t.same(await late.emitWithAck('subscribe', { channel: ROOM }), { ok: true }, 'u3 subscribed');
  await sentinel;
  t.same(events, ['join u1', 'join u3'], 'the observer saw u1 join once and never leave');
  const users = (await api(B.http, `/api/channels/${ROOM}/users`)).body.users.map((u: { user_id: string }) => u.user_id).sort();
  t.same(users, ['u1', 'u3', 'watcher'], 'u1 is a member');
});
