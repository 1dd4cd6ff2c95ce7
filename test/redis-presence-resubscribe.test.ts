// Presence events published while the hosts' Redis subscriptions are down (CLIENT KILL TYPE pubsub here;
// a Redis Cluster failover does the same to the channels of the dead master until they move) reach no
// host: pub/sub keeps nothing. Publications come back from the stream; joins and leaves are found by
// comparing what the hosts' clients were told with the member list in Redis once the subscription is back.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { API_KEY, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { redisClient, startHost, startRedis, until, type Host } from './helpers/redis.js';
import { SWEEP } from '../src/bridge/scripts.js';

const R = await startRedis(t);
const A = await startHost(t, R.url, 'rt', { workers: 2 });
const B = await startHost(t, R.url, 'rt', { workers: 1 });
const ch = 'presence-lobby';

async function member(h: Host, user: string, channel = ch): Promise<TestClient> {
  const tok = signJwt({ sub: user, exp: Math.floor(Date.now() / 1000) + 600, channels: ['presence-*'] }, { secret: JWT_SECRET });
  const c = await TestClient.connect(`${h.url}/ws?token=${tok}`);
  t.teardown(() => c.close());
  const r = await c.request({ op: 'subscribe', channel });
  if (!r.ok) throw new Error(`subscribe ${user}: ${JSON.stringify(r)}`);
  return c;
}
const events = (c: TestClient, channel = ch) => c.frames.filter((f) => f.channel === channel && (f.op === 'join' || f.op === 'leave')).map((f) => `${f.op}:${f.member.user_id}`);

t.test('a join and a leave made while the subscriptions were down are announced once they are back', async (t) => {
  const watcher = await member(A, 'watcher');
  const leaver = await member(B, 'leaver');
  await until('the watcher sees the leaver join', () => events(watcher).includes('join:leaver'));

  // Both hosts lose their subscriber connections; their command connections stay, so the join and the
  // leave below are written to Redis (and published there) before any subscription is back.
  t.ok(Number(await redisClient(t, R.port).client('KILL', 'TYPE', 'pubsub')) >= 2, 'killed the subscriber connections');
  await member(B, 'joiner');
  leaver.close();

  // A join once both hosts listen to the channel again is the sentinel (it comes live or with the rest).
  const admin = redisClient(t, R.port);
  await until('both hosts subscribed again', async () => Number(((await admin.call('PUBSUB', 'NUMSUB', `rt:{${ch}}:c`)) as [string, number])[1]) >= 2);
  await member(B, 'late');
  await until('the watcher sees the late join', () => events(watcher).includes('join:late'), 10000);
  const seen = events(watcher);
  t.same(seen.filter((e) => e !== 'join:leaver').sort(), ['join:joiner', 'join:late', 'leave:leaver'], `the watcher was told of the missed join and leave, once each (${seen.join(', ')})`);
});

// A node whose heartbeat lapsed (on a Redis Cluster: its heartbeat key on a master that failed over) is
// swept by another host while it recovers: the recovery of one channel writes the node's channel set
// again, so the set no longer told the node it had been swept, and its members in the other channels
// stayed removed while their connections were up. Here the sweep of one channel is run by hand, the
// way the sweeper does it, with the channel set left in place.
t.test('a live node swept from a channel registers its members there again', async (t) => {
  const swept = 'presence-swept';
  const m = await member(A, 'm', swept);
  await member(A, 'n', 'presence-other');
  const watcher = await member(B, 'w', swept);
  const admin = redisClient(t, R.port);
  const field = (await admin.hkeys(`rt:{${swept}}:p`)).find((f) => f.endsWith('|m'))!;
  const node = field.slice(0, -'|m'.length);
  await admin.eval(SWEEP, 3, `rt:{${swept}}:p`, `rt:{${swept}}:u`, `rt:{${swept}}:n`, `${node}|`, node, `rt:{${swept}}:c`, 'PUBLISH', '0');
  await admin.srem('rt:nodes', node);
  await until('the watcher sees m leave', () => events(watcher, swept).includes('leave:m'));
  const users = async () => ((await fetch(`${B.http}/api/channels/${swept}/users`, { headers: { authorization: `Bearer ${API_KEY}` } }).then((r) => r.json())).users as { user_id: string }[]).map((u) => u.user_id).sort();
  t.same(await until('m registered again', async () => ((await users()).includes('m') ? users() : undefined), 10000), ['m', 'w'], 'm is listed again');
  await until('the watcher sees m join again', () => events(watcher, swept).join() === 'leave:m,join:m');
  t.equal(m.closed, undefined, "m's connection stayed up");
});
