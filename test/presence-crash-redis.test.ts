// With --redis, a crashed shard's share of cluster-wide presence and counts (its node in Redis: the
// channels it owned, with every subscription of this host to them) is retracted by its replacement
// as soon as the survivors' subscriptions are registered again (docs/scaling.md, "Presence across
// hosts"), not when its heartbeat expires; and a replacement slower to start than --presence-ttl
// does not make the survivors' members leave and join again: the host keeps the dead node alive
// until then.
//
// "Nothing else arrived" is a sentinel, never a sleep.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Redis from 'ioredis';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { APP, RawPusher, sdk } from './helpers/pusher.js';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { channelOwnedBy, clientOnShard, until } from './helpers/faults.js';
import { TestClient } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, startHost } from './helpers/redis.js';

t.setTimeout(300_000);

const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, channels: ['presence-*'], user_info: { name: sub } }, { secret: JWT_SECRET });
const presenceOps = (c: TestClient) => c.frames.filter((f) => f.op === 'leave' || f.op === 'join').map((f) => `${f.op} ${f.member.user_id}`);

/**
 * Host A (this process, two shards) and host B (one shard) on one Redis. On the presence channel `ch`,
 * owned by A's shard 0: `viewer` on A's shard 1, `remote` on B, `ghost` on A's shard 0 only, `both`
 * on A's shards 0 and 1. `remote` has seen everyone join.
 */
async function cluster(t: Parameters<Parameters<typeof t.test>[1]>[0], prefix: string, ttl: string, actors?: string) {
  const redis = await machineRedis(t);
  const ns = `rt-pcr-${process.pid}-${Date.now()}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const A = await startServer(t, { workers: 2, redis: redis.url, redisNamespace: ns, presenceTtl: Number.parseFloat(ttl), ...(actors ? { actors } : {}) });
  const B = await startHost(t, redis.url, ns, { workers: 1, args: ['--presence-ttl', ttl] });
  const ch = channelOwnedBy(prefix, 0, 2);
  const ws = (user: string) => `${A.url}/ws?token=${token(user)}`;
  const viewer = await clientOnShard(ws('viewer'), 1, t);
  const remote = await TestClient.connect(`${B.url}/ws?token=${token('remote')}`);
  t.teardown(() => remote.close());
  const ghost = await clientOnShard(ws('ghost'), 0, t);
  const both = [await clientOnShard(ws('both'), 0, t), await clientOnShard(ws('both'), 1, t)];
  t.equal((await remote.request({ op: 'subscribe', channel: ch })).ok, true);
  for (const c of [viewer, ghost, ...both]) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true);
  for (const user of ['viewer', 'ghost', 'both']) await remote.next((f) => f.op === 'join' && f.member.user_id === user);
  for (const user of ['ghost', 'both']) await viewer.next((f) => f.op === 'join' && f.member.user_id === user);
  remote.frames.length = 0;
  viewer.frames.length = 0;
  return { A, B, ch, redis, ns, viewer, remote, ghost };
}

t.test('with --redis: the crashed shard\'s subscribers stop counting as soon as it is replaced, not when its heartbeat expires', async (t) => {
  // The default ttl: the dead thread's node would count for ~20 s if left to expire.
  const { A, B, ch, remote, ghost } = await cluster(t, 'presence-retract-', '15s');
  t.equal((await api(B.http, `/api/channels/${ch}`)).body.subscribers, 5);

  A.crashShard(0);
  t.equal((await ghost.waitClose(10_000)).code, 1011);
  await until(async () => (await api(A.http, '/health')).body.workers.alive === 2, 'shard 0 replaced', 30_000);
  // viewer, remote and both's tab on shard 1; far sooner than the 15 s heartbeat.
  const started = Date.now();
  await until(async () => (await api(B.http, `/api/channels/${ch}`)).body.subscribers === 3, 'the count without the dead shard\'s subscribers, on the other host', 5_000);
  t.ok(Date.now() - started < 5_000);
  t.equal((await api(A.http, `/api/channels/${ch}`)).body.subscribers, 3, 'and on the crashed shard\'s host');
  const leave = await remote.next((f) => f.op === 'leave', 5_000);
  t.equal(leave.member.user_id, 'ghost', 'the member only on the dead shard leaves');

  await until(async () => (await api(A.http, '/api/publish', { channel: ch, event: 'sentinel', data: 1 })).status === 200, 'publish after the restart');
  await remote.next((f) => f.op === 'message' && f.event === 'sentinel', 10_000);
  t.same(presenceOps(remote), [], 'no leave for the member still connected on a survivor, none twice');
  t.same((await api(B.http, `/api/channels/${ch}/users`)).body.users.map((u: any) => u.user_id).sort(), ['both', 'remote', 'viewer']);
});

t.test('with --redis: a replacement slower to start than --presence-ttl makes no member on a survivor leave and join again', async (t) => {
  const gate = path.join(os.tmpdir(), `rt-slow-replacement-${process.pid}-${Date.now()}`);
  t.teardown(() => fs.rmSync(gate, { force: true }));
  process.env.SLOW_REPLACEMENT_GATE = gate;
  t.teardown(() => void delete process.env.SLOW_REPLACEMENT_GATE);
  const { A, ch, redis, ns, viewer, remote, ghost } = await cluster(t, 'presence-slow-', '1s', fileURLToPath(new URL('./fixtures/slow-replacement', import.meta.url)));
  const nodes = new Redis({ port: redis.port, host: '127.0.0.1' });
  t.teardown(() => nodes.disconnect());
  const [dead] = (await nodes.smembers(`${ns}:nodes`)).filter((n) => n.startsWith(`${A.config.hostId}:0:`));
  t.ok(dead, "shard 0's node is registered");

  A.crashShard(0);
  t.equal((await ghost.waitClose(10_000)).code, 1011);
  // Host B sweeps every third of a second: three ttls go by with the replacement still loading.
  const deadline = Date.now() + 3_000;
  await until(async () => Date.now() > deadline && (await api(A.http, '/health')).body.workers.alive === 1, 'three ttls with shard 0 down', 10_000);
  t.same(presenceOps(remote).filter((op) => op !== 'leave ghost'), [], 'nobody but the dead shard\'s own member left meanwhile');
  fs.writeFileSync(gate, '');
  await until(async () => (await api(A.http, '/health')).body.workers.alive === 2, 'shard 0 replaced', 30_000);
  // The replacement retires the dead node after it is up: its leave is published to Redis then, and may
  // follow a publication made as soon as /health counts the shard. Wait for it, then the sentinel.
  for (const c of [remote, viewer]) await c.next((f) => f.op === 'leave' && f.member.user_id === 'ghost', 10_000);

  await until(async () => (await api(A.http, '/api/publish', { channel: ch, event: 'sentinel', data: 1 })).status === 200, 'publish after the restart');
  for (const c of [remote, viewer]) await c.next((f) => f.op === 'message' && f.event === 'sentinel', 10_000);
  // The waits above took each client's leave of ghost; a second one, or anyone else's, would be left.
  t.same(presenceOps(remote), [], 'on the other host: the dead shard\'s member left once, nobody else left or joined');
  t.same(presenceOps(viewer), [], 'on the crashed shard\'s host: the same');
  await until(async () => (await api(A.http, `/api/channels/${ch}`)).body.subscribers === 3, 'the count of the survivors', 5_000);
  t.same((await api(A.http, `/api/channels/${ch}/users`)).body.users.map((u: any) => u.user_id).sort(), ['both', 'remote', 'viewer']);
  await until(async () => !(await nodes.sismember(`${ns}:nodes`, dead!)), 'the dead node gone from Redis', 5_000);
});

// The joins and leaves Redis publishes while the crashed shard's host has no owner for the channel
// reach none of its threads; a subscriber there that comes in meanwhile gets a list with them. Its
// thread's other clients must still be told each once: no leave of a member they never saw join, no
// second join.
t.test('with --redis: a member that joins on another host while the owner is down, and a new subscriber meanwhile: one join and one leave each', async (t) => {
  const gate = path.join(os.tmpdir(), `rt-slow-replacement-${process.pid}-${Date.now()}-b`);
  t.teardown(() => fs.rmSync(gate, { force: true }));
  process.env.SLOW_REPLACEMENT_GATE = gate;
  t.teardown(() => void delete process.env.SLOW_REPLACEMENT_GATE);
  const { A, B, ch, viewer, remote, ghost } = await cluster(t, 'presence-gap-', '15s', fileURLToPath(new URL('./fixtures/slow-replacement', import.meta.url)));

  A.crashShard(0);
  t.equal((await ghost.waitClose(10_000)).code, 1011);
  // While the replacement loads: a member joins on host B, and a new subscriber comes to shard 1
  // (its subscribe waits for the owner).
  const x = await TestClient.connect(`${B.url}/ws?token=${token('x')}`);
  t.teardown(() => x.close());
  t.equal((await x.request({ op: 'subscribe', channel: ch })).ok, true);
  const w = await clientOnShard(`${A.url}/ws?token=${token('w')}`, 1, t);
  const wSubscribed = w.request({ op: 'subscribe', channel: ch }, 30_000);
  fs.writeFileSync(gate, '');
  const reply = await wSubscribed;
  t.equal(reply.ok, true);
  // The ghost may still be listed: the dead thread's node is retired after the replay.
  t.same(reply.members.map((m: any) => m.user_id).filter((u: string) => u !== 'ghost').sort(), ['both', 'remote', 'viewer', 'w', 'x'], "the new subscriber's list has the member that joined meanwhile");
  await until(async () => (await api(A.http, '/health')).body.workers.alive === 2, 'shard 0 replaced', 30_000);
  await until(async () => !(await api(A.http, `/api/channels/${ch}/users`)).body.users.some((u: any) => u.user_id === 'ghost'), 'the ghost gone', 10_000);

  x.close();
  await until(async () => (await api(A.http, '/api/publish', { channel: ch, event: 'sentinel', data: 1 })).status === 200, 'publish after the restart');
  for (const c of [viewer, remote, w]) await c.next((f) => f.op === 'message' && f.event === 'sentinel', 10_000);
  // x's leave may be published after the sentinel: wait for it where it is due, then look at all.
  await viewer.next((f) => f.op === 'leave' && f.member.user_id === 'x', 10_000).then((f) => viewer.frames.push(f));
  await remote.next((f) => f.op === 'leave' && f.member.user_id === 'x', 10_000).then((f) => remote.frames.push(f));
  const perUser = (c: TestClient) => {
    const out: Record<string, string[]> = {};
    for (const op of presenceOps(c)) {
      const [kind, user] = op.split(' ');
      (out[user!] ??= []).push(kind!);
    }
    return out;
  };
  t.same(perUser(viewer), { ghost: ['leave'], x: ['join', 'leave'], w: ['join'] }, "the crashed shard's host: each change once");
  t.same(perUser(remote), { ghost: ['leave'], x: ['join', 'leave'], w: ['join'] }, 'the other host: the same');
});

// The crashing shard still saw its clients go, and wrote their leaves to Redis: the member_removed and
// channel_vacated those decided were queued in the dying thread and lost with it. They are now left to
// the replacement, which retires the dead thread's node and sends them.
t.test('with --redis: Pusher webhooks tell of every member of the crashed shard leaving, once', async (t) => {
  const events: { name: string; channel: string; user_id?: string }[] = [];
  const rx = createHttpServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    events.push(...JSON.parse(body).events);
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
  t.teardown(() => rx.close());
  const redis = await machineRedis(t);
  const ns = `rt-pcr-${process.pid}-${Date.now()}-hooks`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const webhooks = [{ url: `http://127.0.0.1:${(rx.address() as AddressInfo).port}/` }];
  const A = await startServer(t, { workers: 2, redis: redis.url, redisNamespace: ns, pusherApps: [{ ...APP, webhooks }] });
  const ch = channelOwnedBy('presence-hooks-', 0, 2);
  const count = (name: string, channel = ch) => events.filter((e) => e.name === name && e.channel === channel).length;
  // Sockets are spread over both shards: some of these members are on shard 0 only.
  const raws: RawPusher[] = [];
  for (let i = 0; i < 6; i++) {
    const raw = await RawPusher.open(t, `ws://127.0.0.1:${A.port}/app/${APP.key}?protocol=7`);
    const socketId = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string;
    raw.send({ event: 'pusher:subscribe', data: { channel: ch, ...sdk(A.port).authorizeChannel(socketId, ch, { user_id: `u${i}` }) } });
    await raw.event('pusher_internal:subscription_succeeded');
    raws.push(raw);
  }
  await until(() => count('member_added') === 6, 'six members added');

  A.crashShard(0);
  // The shard marks itself down before it closes its sockets.
  await until(() => raws.some((r) => r.closed), 'the crashed shard\'s members disconnected', 10_000);
  await until(async () => (await api(A.http, '/health')).body.workers.alive === 2, 'shard 0 replaced', 30_000);
  for (const r of raws) r.ws.close();
  await until(() => count('member_removed') >= 6 && count('channel_vacated') >= 1, 'every member removed, the channel vacated', 10_000);
  // Sentinel: a channel occupied after everything above; a second webhook would come before it.
  const probe = await RawPusher.open(t, `ws://127.0.0.1:${A.port}/app/${APP.key}?protocol=7`);
  await probe.event('pusher:connection_established');
  probe.send({ event: 'pusher:subscribe', data: { channel: 'hooks-sentinel' } });
  await until(() => count('channel_occupied', 'hooks-sentinel') === 1, 'the sentinel occupied', 10_000);
  t.same(events.filter((e) => e.channel === ch && e.name === 'member_removed').map((e) => e.user_id).sort(), ['u0', 'u1', 'u2', 'u3', 'u4', 'u5'], 'one member_removed each');
  t.equal(count('channel_vacated'), 1, 'vacated once');
  t.equal(count('channel_occupied'), 1, 'occupied once');
});
