// A subscriber count that Redis refused to record while its connection stayed up (writes refused, a slot
// unserved during a Cluster failover) was left for recover(), which runs only after a reconnect: none came,
// and GET /api/channels/:name on every host kept counting subscribers that had left, for good. The same
// for a channel's last local subscriber (the channel was no longer relayed, so its count of 0 was never
// retried) and for a presence leave (only logged: the member stayed listed on every host).
import t from 'tap';
import type { Test } from 'tap';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { redisCall, startHost, startRedis, until, type Host } from './helpers/redis.js';

const R = await startRedis(t);
const A = await startHost(t, R.url, 'rt');
const B = await startHost(t, R.url, 'rt');

t.test('a count Redis refused while connected is written once Redis takes writes again', async (t) => {
  const stay = await TestClient.connect(A.url + '/ws');
  const leave = await TestClient.connect(A.url + '/ws');
  t.teardown(() => (stay.close(), leave.close()));
  for (const c of [stay, leave]) t.equal((await c.request({ op: 'subscribe', channel: 'counted' })).ok, true);
  await until('both subscribers counted', async () => (await api(B.http, '/api/channels/counted')).body.subscribers === 2);
  // Writes refused, the connection up: no reconnect will follow.
  await redisCall(R.port, 'CONFIG', 'SET', 'min-replicas-to-write', '1');
  try {
    t.equal((await leave.request({ op: 'unsubscribe', channel: 'counted' })).ok, true);
    await until('the refused count write to be logged', () => /subscriber count not recorded/.test(A.output()));
    // Said in words an operator can act on, not "Redis returned an error".
    const refused = await api(B.http, '/api/publish', { channel: 'counted', event: 'e', data: 1 });
    t.equal(refused.status, 503);
    t.match(refused.body.error?.message, /min-replicas-to-write/);
  } finally {
    await redisCall(R.port, 'CONFIG', 'SET', 'min-replicas-to-write', '0');
  }
  await until('the count to come down on the other host', async () => (await api(B.http, '/api/channels/counted')).body.subscribers === 1);
  t.pass();
});

const token = (sub: string) => signJwt({ sub, channels: ['presence-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

async function member(t: Test, h: Host, user: string, ...channels: string[]): Promise<TestClient> {
  const c = await TestClient.connect(`${h.url}/ws?token=${token(user)}`);
  t.teardown(() => c.close());
  for (const ch of channels) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true, `${user} joined ${ch}`);
  return c;
}

const listed = async (h: Host, ch: string) => {
  const [info, users] = await Promise.all([api(h.http, `/api/channels/${ch}`), api(h.http, `/api/channels/${ch}/users`)]);
  return `${info.body.subscribers} ${users.body.users?.map((u: { user_id: string }) => u.user_id).sort().join()}`;
};

t.test('presence leaves and a last count of 0 Redis refused while connected are written once it takes writes again', async (t) => {
  // Host A: alice is the only subscriber of presence-vacated there; ann stays in presence-kept.
  const alice = await member(t, A, 'alice', 'presence-vacated', 'presence-kept');
  await member(t, A, 'ann', 'presence-kept');
  const bob = await member(t, B, 'bob', 'presence-vacated', 'presence-kept');
  await until('both channels to be counted and listed', async () => (await listed(B, 'presence-vacated')) === '2 alice,bob' && (await listed(B, 'presence-kept')) === '3 alice,ann,bob');
  const logged = A.output().length;
  await redisCall(R.port, 'CONFIG', 'SET', 'min-replicas-to-write', '1');
  try {
    alice.close();
    await until('the refused leaves and counts to be logged', () => {
      const out = A.output().slice(logged);
      return out.match(/presence leave of alice not recorded/g)?.length === 2 && out.match(/subscriber count not recorded/g)?.length === 2;
    });
  } finally {
    await redisCall(R.port, 'CONFIG', 'SET', 'min-replicas-to-write', '0');
  }
  for (const ch of ['presence-vacated', 'presence-kept']) await bob.next((f) => f.op === 'leave' && f.channel === ch && f.member.user_id === 'alice', 15000);
  await until('presence-vacated to count and list bob alone', async () => (await listed(B, 'presence-vacated')) === '1 bob');
  await until('presence-kept to count and list ann and bob', async () => (await listed(B, 'presence-kept')) === '2 ann,bob');
  // A publication goes through the same Redis channel as the leaves: one written again later arrives before it.
  for (const ch of ['presence-vacated', 'presence-kept']) t.equal((await api(A.http, '/api/publish', { channel: ch, event: 'after', data: 1 })).status, 200);
  for (const ch of ['presence-vacated', 'presence-kept']) await bob.next((f) => f.op === 'message' && f.channel === ch && f.event === 'after', 10000);
  for (const ch of ['presence-vacated', 'presence-kept']) {
    // The leave waited for above was taken from bob's frames: none may be left.
    t.equal(bob.frames.filter((f) => f.op === 'leave' && f.channel === ch).length, 0, `alice left ${ch} once`);
  }
  t.equal((await api(A.http, '/api/channels/presence-vacated')).body.subscribers, 1, 'host A agrees');
});
