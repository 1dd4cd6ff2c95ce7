// A shard that held a user's only connections crashes while it also owned a presence channel the user
// was a member of: the replacement rebuilds the channel from the other threads' re-subscriptions, then
// announces the members nobody re-registered (docs/architecture.md, "Failure and shutdown"). Native
// clients here; Pusher clients, webhooks and the watchlist in test/pusher-presence-crash.test.ts.
//
// "Nothing else arrived" is a sentinel, never a sleep: a publication the new owner fans out after its
// reconcile travels the same ring as any leave it would have sent.
import t from 'tap';
import { signJwt } from 'rt-actors';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { FAULT_ACTORS, channelOwnedBy, clientOnShard, listenProbe, until } from './helpers/faults.js';
import { TestClient } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, startHost } from './helpers/redis.js';

t.setTimeout(300_000);

const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, channels: ['presence-*'], user_info: { name: sub } }, { secret: JWT_SECRET });

t.test('owner crash: a member whose connections were all on it leaves; one also on a survivor stays', async (t) => {
  const s = await startServer(t, { workers: 2 });
  const ch = channelOwnedBy('presence-crash-', 0, 2);
  const ws = (user: string) => `${s.url}/ws?token=${token(user)}`;
  const viewer = await clientOnShard(ws('viewer'), 1, t);
  const ghost = await clientOnShard(ws('ghost'), 0, t);
  const twoTabs = [await clientOnShard(ws('both'), 0, t), await clientOnShard(ws('both'), 1, t)];
  t.same((await viewer.request({ op: 'subscribe', channel: ch })).members.map((m: any) => m.user_id), ['viewer']);
  for (const c of [ghost, ...twoTabs]) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true);
  await viewer.next((f) => f.op === 'join' && f.member.user_id === 'ghost');
  await viewer.next((f) => f.op === 'join' && f.member.user_id === 'both');

  s.crashShard(0);
  t.equal((await ghost.waitClose(10_000)).code, 1011, "the crashed shard's client is told to reconnect");
  const leave = await viewer.next((f) => f.op === 'leave', 30_000);
  t.same(leave.member, { user_id: 'ghost', user_info: { name: 'ghost' } }, 'the ghost leaves, with the info its join had');

  // Sentinel: published after the reconcile, so any other leave would be before it.
  await until(async () => (await api(s.http, '/api/publish', { channel: ch, event: 'sentinel', data: 1 })).status === 200, 'publish after the restart');
  await viewer.next((f) => f.op === 'message' && f.event === 'sentinel', 10_000);
  t.same(viewer.frames.filter((f) => f.op === 'leave' || f.op === 'join'), [], 'no leave for the user still connected on the survivor, none for the viewer, no second one');
  const members = await viewer.request({ op: 'presence', channel: ch });
  t.same(members.members.map((m: any) => m.user_id).sort(), ['both', 'viewer'], 'the rebuilt channel lists the survivors');
  const users = await api(s.http, `/api/channels/${ch}/users`);
  t.same(users.body.users.map((u: any) => u.user_id).sort(), ['both', 'viewer']);

  // The rebuilt channel announces later departures normally, once.
  twoTabs[1]!.close();
  const last = await viewer.next((f) => f.op === 'leave', 10_000);
  t.equal(last.member.user_id, 'both', "the survivor's last tab closing is announced");
});

t.test('a survivor busy when a shard died: the replacement takes no late answer for its own, and its first subscriber is told of every member', async (t) => {
  const s = await startServer(t, { workers: 2, actors: FAULT_ACTORS });
  const probe = listenProbe(t);
  const ch = channelOwnedBy('presence-early-', 0, 2);
  const ws = (user: string) => `${s.url}/ws?token=${token(user)}`;
  const bob = await clientOnShard(ws('bob'), 1, t);
  t.equal((await bob.request({ op: 'subscribe', channel: ch })).ok, true);

  // Shard 1 blocked (the probe actor) by a publish (forwarded by shard 0 when the API request lands
  // there): it answers it, and replays bob's subscription, once the file exists — by then to shard 0's
  // replacement.
  const release = path.join(os.tmpdir(), `rt-presence-early-${process.pid}-${Date.now()}`);
  t.teardown(() => fs.rmSync(release, { force: true }));
  void api(s.http, '/api/publish', { channel: channelOwnedBy('probe-stall-', 1, 2), event: 'stall', data: { release } }).catch(() => {});
  await probe.next((x) => x.stalled !== undefined);
  s.crashShard(0);

  // A connection on the replacement; those handed to the blocked shard wait, and are closed at the end.
  const waiting: TestClient[] = [];
  t.teardown(() => waiting.forEach((c) => c.close()));
  const ann = await until(async () => {
    const c = new Promise<TestClient>((resolve, reject) => {
      TestClient.connect(ws('ann')).then(resolve, reject);
    });
    const got = await Promise.race([c, new Promise<undefined>((r) => setTimeout(r, 500))]);
    if (got?.welcome.socket_id.startsWith('0.')) return got;
    if (got) waiting.push(got);
    else void c.then((late) => waiting.push(late), () => {});
    return undefined;
  }, 'a connection on the replacement of shard 0', 30_000);
  t.teardown(() => ann.close());

  const subscribed = ann.request({ op: 'subscribe', channel: ch }, 30_000);
  fs.writeFileSync(release, '');
  const reply = await subscribed;
  t.match(reply, { ok: true, channel: ch, epoch: String }, 'the reply is the subscribe\'s');
  // Sentinel: published after the replay, so a join for bob would be before it.
  await until(async () => (await api(s.http, '/api/publish', { channel: ch, event: 'sentinel', data: 1 })).status === 200, 'publish after the replay');
  await ann.next((f) => f.op === 'message' && f.event === 'sentinel', 10_000);
  const known = [...(reply.members ?? []).map((m: any) => m.user_id), ...ann.frames.filter((f) => f.op === 'join').map((f) => f.member.user_id)];
  t.same(known.sort(), ['ann', 'bob'], 'bob, re-registered by the replay, is in the member list or joins');
  t.same((await api(s.http, `/api/channels/${ch}/users`)).body.users.map((u: any) => u.user_id).sort(), ['ann', 'bob']);
});

// With --redis the members live in Redis and the dead thread's own are removed from it at once — but
// that leave, and any join on another host, is published while this host has no owner relaying the
// channel: the survivors on this host were never told, and listed the dead member for ever.
t.test('with --redis: survivors on the crashed host are told of the leave (and a join) Redis published while the owner was gone', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-pcrash-${process.pid}-${Date.now()}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  // The default presence ttl: the dead thread's node is not swept while its replacement starts.
  const s = await startServer(t, { workers: 2, redis: redis.url, redisNamespace: ns });
  const B = await startHost(t, redis.url, ns, { workers: 1, args: ['--presence-ttl', '15s'] });
  const ch = channelOwnedBy('presence-crash-redis-', 0, 2);
  const ws = (user: string) => `${s.url}/ws?token=${token(user)}`;
  const viewer = await clientOnShard(ws('viewer'), 1, t);
  const remote = await TestClient.connect(`${B.url}/ws?token=${token('remote')}`);
  t.teardown(() => remote.close());
  const ghost = await clientOnShard(ws('ghost'), 0, t);
  const twoTabs = [await clientOnShard(ws('both'), 0, t), await clientOnShard(ws('both'), 1, t)];
  t.same((await viewer.request({ op: 'subscribe', channel: ch })).members.map((m: any) => m.user_id), ['viewer']);
  for (const c of [remote, ghost, ...twoTabs]) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true);
  for (const user of ['remote', 'ghost', 'both']) await viewer.next((f) => f.op === 'join' && f.member.user_id === user);
  viewer.frames.length = 0;

  s.crashShard(0);
  t.equal((await ghost.waitClose(10_000)).code, 1011, "the crashed shard's client is told to reconnect");
  // Joins on the other host while (or just after) this host has no owner of the channel.
  const late = await TestClient.connect(`${B.url}/ws?token=${token('late')}`);
  t.teardown(() => late.close());
  t.equal((await late.request({ op: 'subscribe', channel: ch })).ok, true);
  const leave = await viewer.next((f) => f.op === 'leave', 30_000);
  t.same(leave.member, { user_id: 'ghost', user_info: { name: 'ghost' } }, 'the ghost leaves for the survivor on its own host');
  await viewer.next((f) => f.op === 'join' && f.member.user_id === 'late', 30_000);

  // Sentinel: published after the replacement serves, so a repeated join or leave would come before it.
  await until(async () => (await api(s.http, '/health')).body.workers.alive === 2, 'shard 0 replaced');
  await until(async () => (await api(s.http, '/api/publish', { channel: ch, event: 'sentinel', data: 1 })).status === 200, 'publish after the restart');
  await viewer.next((f) => f.op === 'message' && f.event === 'sentinel', 10_000);
  t.same(viewer.frames.filter((f) => f.op === 'leave' || f.op === 'join'), [], 'no other join or leave: none twice, none for the user still on the survivor');
  const users = await api(B.http, `/api/channels/${ch}/users`);
  t.same(users.body.users.map((u: any) => u.user_id).sort(), ['both', 'late', 'remote', 'viewer'], "the survivor's view is the cluster's list");
});
