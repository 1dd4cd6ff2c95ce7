// An outage of Redis longer than --presence-ttl lets every host's heartbeat key expire, the live hosts'
// as well as a dead one's. When Redis came back, the first host to reconnect swept the others that had
// not reconnected yet: their members left, and joined again a moment later when those hosts found
// themselves removed; a placed actor on the first host ran onLeave for their subscribers. A host that
// saw Redis fail now gives the others a ttl to write their heartbeat before taking them for dead; the
// host that truly died during the outage is still swept, and its subscriber leaves the placed actor.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { signJwt } from 'rt-actors';
import { JWT_SECRET, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { startHost, startRedis, until, type Host } from './helpers/redis.js';

const TTL_S = 8;
// Append-only file: the restart keeps every key, the heartbeats with their expiry times, as a production Redis would.
const R = await startRedis(t, { persist: true });
// roster-*: a placed actor that records who left it (onLeave).
const actors = fileURLToPath(new URL('./fixtures/placed-crash', import.meta.url));
// A lease outliving the outage: the placed actor stays where it is.
const hostArgs = { workers: 1, args: ['--presence-ttl', `${TTL_S}s`, '--actors', actors, '--lease-ttl', '60s'] };
const [A, B, C] = await Promise.all([startHost(t, R.url, 'rt', hostArgs), startHost(t, R.url, 'rt', hostArgs), startHost(t, R.url, 'rt', hostArgs)]);

const token = (sub: string) => signJwt({ sub, channels: ['presence-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });
const redisUp = async (h: Host, up: boolean) => {
  const r = (await api(h.http, '/health', undefined, { key: null })).body.redis;
  return up ? r.connected === r.shards : r.connected === 0;
};

t.test('Redis away longer than --presence-ttl: live hosts keep their members, the host that died meanwhile loses its', async (t) => {
  const channel = 'presence-outage';
  const roster = 'roster-outage';
  const member = async (h: Host, user: string) => {
    const c = await TestClient.connect(`${h.url}/ws?token=${token(user)}`);
    t.teardown(() => c.close());
    t.equal((await c.request({ op: 'subscribe', channel })).ok, true, `${user} joined`);
    // Host A subscribes first: its shard takes the placed actor's lease and runs it.
    t.equal((await c.request({ op: 'subscribe', channel: roster }, 20000)).ok, true, `${user} subscribed to ${roster}`);
    return c;
  };
  const ann = await member(A, 'ann');
  const bob = await member(B, 'bob');
  const carl = await member(C, 'carl');
  const [annId, bobId, carlId] = [ann, bob, carl].map((c) => c.welcome.socket_id as string);
  const ask = async () => {
    const r = await ann.request({ op: 'publish', channel: roster, event: 'roster', data: null }, 20000);
    if (!r.ok) throw new Error(`roster: ${JSON.stringify(r)}`);
    return r.data as { subscribers: string[]; left: string[] };
  };
  t.same((await ask()).subscribers, [annId, bobId, carlId].sort(), 'the placed actor counts all three');
  const members = async () => ((await api(A.http, `/api/channels/${channel}/users`)).body.users as { user_id: string }[] | undefined)?.map((u) => u.user_id).sort().join();
  await until('ann, bob and carl listed', async () => (await members()) === 'ann,bob,carl');

  await R.kill();
  const downAt = Date.now();
  await until('hosts A and B to notice Redis is gone', async () => (await redisUp(A, false)) && (await redisUp(B, false)));
  // The fault lasts past every heartbeat's expiry: this wait is the outage itself, not a wait for an event.
  await until('the outage to outlast --presence-ttl', () => Date.now() - downAt > TTL_S * 1000 + 1000, TTL_S * 1000 + 5000, 100);
  C.proc.kill('SIGKILL');
  // Host B comes back well after host A (one of several hosts reconnecting on its own backoff, or
  // slowed down), though within a ttl: A's sweeps, and its placed actor's check of its subscribers'
  // hosts (every 5 s), find B's heartbeat expired and not yet written again.
  B.proc.kill('SIGSTOP');
  t.teardown(() => void B.proc.kill('SIGCONT'));
  await R.start();
  await until('host A to reconnect', () => redisUp(A, true), 20000);
  const backAt = Date.now();
  await until('host B held 5.5 s more (the fault, not a wait for an event)', () => Date.now() - backAt > 5500, 10000, 100);
  B.proc.kill('SIGCONT');
  await until('host B to reconnect', () => redisUp(B, true), 20000);

  const told = (c: TestClient) => c.frames.filter((f) => f.channel === channel && (f.op === 'join' || f.op === 'leave')).map((f) => `${f.op} ${f.member.user_id}`);
  // Sentinel: host C, dead, is swept; both live hosts' clients are told carl left.
  for (const [name, c] of [['ann', ann], ['bob', bob]] as const) {
    await until(`${name} to be told carl left (host C swept)`, () => told(c).includes('leave carl'), 30000);
  }
  await until('ann and bob listed', async () => (await members()) === 'ann,bob', 10000);
  // What each was told since joining: the joins of those who came after, and carl's leave. Nothing of
  // the other live member, who never left.
  t.same(told(ann), ['join bob', 'join carl', 'leave carl'], 'ann: bob joined once and never left');
  t.same(told(bob), ['join carl', 'leave carl'], 'bob: ann never left (nor joined again)');
  // The placed actor: carl's subscription leaves it (host C dead), bob's never did.
  const after = await until('carl to leave the placed actor', async () => {
    const r = await ask();
    return r.left.includes(carlId!) ? r : undefined;
  }, 30000, 250);
  t.same(after.left, [carlId], 'only carl left the placed actor');
  t.same(after.subscribers, [annId, bobId].sort(), 'ann and bob are still its subscribers');
});
