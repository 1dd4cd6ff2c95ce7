// Presence members that leave a live host while Redis is away: their leave cannot be written then, and
// a host that keeps heartbeating is never swept, so once Redis is back (with its data) the host itself
// must take them out — both on a channel it still relays and on one it no longer relays at all.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { startHost, startRedis, until, type Host } from './helpers/redis.js';

// Append-only file: the restart keeps the stale entries, as a production Redis would.
const R = await startRedis(t, { persist: true });
const A = await startHost(t, R.url, 'rt', { workers: 1 });
const B = await startHost(t, R.url, 'rt', { workers: 1 });

const token = (sub: string) => signJwt({ sub, channels: ['presence-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

async function member(h: Host, user: string, ...channels: string[]): Promise<TestClient> {
  const c = await TestClient.connect(`${h.url}/ws?token=${token(user)}`);
  t.teardown(() => c.close());
  for (const ch of channels) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true, `${user} joined ${ch}`);
  return c;
}

const users = async (ch: string) => (await api(A.http, `/api/channels/${ch}/users`)).body.users?.map((u: { user_id: string }) => u.user_id).sort();
const redisUp = async (h: Host, up: boolean) => {
  const r = (await api(h.http, '/health', undefined, { key: null })).body.redis;
  return up ? r.connected === r.shards : r.connected === 0;
};

t.test('members that left during the outage leave cluster-wide once Redis is back', async (t) => {
  // `kept` stays relayed by B (bob stays); B has nobody left in `gone` after the outage.
  const watcher = await member(A, 'ann', 'presence-kept', 'presence-gone');
  const carl = await member(B, 'carl', 'presence-kept', 'presence-gone');
  const bob = await member(B, 'bob', 'presence-kept', 'presence-gone');
  await until('both channels to list ann, bob and carl', async () => (await users('presence-kept'))?.join() === 'ann,bob,carl' && (await users('presence-gone'))?.join() === 'ann,bob,carl');

  await R.kill();
  await until('host B to notice Redis is gone', () => redisUp(B, false));
  carl.close();
  t.equal((await bob.request({ op: 'unsubscribe', channel: 'presence-gone' })).ok, true, 'bob leaves presence-gone during the outage');
  // Sentinel: B has closed carl's connection (its leave was attempted while Redis was away).
  await until('host B to hold bob alone', async () => (await api(B.http, '/health', undefined, { key: null })).body.connections === 1);
  await R.start();
  await until('both hosts to reconnect', async () => (await redisUp(A, true)) && (await redisUp(B, true)));

  await watcher.next((f) => f.op === 'leave' && f.channel === 'presence-kept' && f.member.user_id === 'carl', 15000);
  await until('presence-kept to list ann and bob', async () => (await users('presence-kept'))?.join() === 'ann,bob');
  t.pass('carl left presence-kept, which host B still relays');
  for (const user of ['bob', 'carl']) await watcher.next((f) => f.op === 'leave' && f.channel === 'presence-gone' && f.member.user_id === user, 15000);
  await until('presence-gone to list ann alone', async () => (await users('presence-gone'))?.join() === 'ann');
  t.pass('bob and carl left presence-gone, which host B no longer relays');
  const info = (await api(A.http, '/api/channels/presence-gone')).body;
  t.equal(info.subscribers, 1, 'host B no longer counts subscribers of presence-gone');
  t.equal(info.presence, 1);
  t.same((await watcher.request({ op: 'presence', channel: 'presence-kept' })).members.map((m: { user_id: string }) => m.user_id).sort(), ['ann', 'bob']);
  t.notOk(watcher.frames.some((f) => f.op === 'leave' && f.member.user_id === 'ann'), 'nobody else left');
  t.notOk(watcher.frames.some((f) => f.op === 'leave' && f.channel === 'presence-kept' && f.member.user_id === 'bob'), 'bob stayed in presence-kept');
});
