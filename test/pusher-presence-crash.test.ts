// The owner-crash reconcile (docs/architecture.md, "Failure and shutdown") seen by Pusher clients: a
// member whose only connection was on the crashed shard that owned the presence channel is removed
// for pusher-js subscribers (pusher_internal:member_removed) and in a member_removed webhook; a
// signed-in user whose connection and online channel were there goes offline for its watchers.
//
// The ghost speaks the protocol on a raw socket: pusher-js would reconnect at once, and a reconnected
// member rightly stays. Nothing-else checks use sentinels, never sleeps.
import t from 'tap';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Pusher from 'pusher-js';
import { api, startServer } from './helpers/server.js';
import { APP, connected, nextOn, pusherClient, RawPusher, sdk, subscribed, type ClientOpts } from './helpers/pusher.js';
import { channelOwnedBy, ownerOf, until } from './helpers/faults.js';
import { is, sentinel, signIn, type Watcher } from './helpers/watchlist.js';

t.setTimeout(300_000);

type T = Parameters<typeof pusherClient>[0];

/**
 * Which shard a Pusher socket id is on. Pusher ids do not name their thread: each thread draws one
 * random base for its ids (src/transports/pusher/client.ts). With one connection open, /metrics tells
 * its thread; with two shards every other base is the other one's.
 */
async function pusherShardOf(t: T, port: number, http: string): Promise<(socketId: string) => number> {
  const raw = await RawPusher.open(t, `ws://127.0.0.1:${port}/app/${APP.key}?protocol=7`);
  const socketId = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string;
  // An object: thread 0 is falsy, and `until` waits for a truthy value.
  const { thread } = await until(async () => {
    const text = (await api(http, '/metrics')).body as string;
    const line = text.split('\n').find((l) => l.startsWith('rt_connections{') && l.includes('protocol="pusher"') && l.endsWith(' 1'));
    return line ? { thread: Number(/thread="(\d+)"/.exec(line)![1]) } : undefined;
  }, 'the probe connection counted');
  raw.ws.close();
  const base = socketId.split('.')[0];
  return (id) => (id.split('.')[0] === base ? thread : 1 - thread);
}

type ShardOf = (socketId: string) => number;

/** A raw Pusher socket on `shard` (sockets are spread over the shards), with its socket id. */
async function rawOnShard(t: T, port: number, shardOf: ShardOf, shard: number): Promise<{ raw: RawPusher; socketId: string }> {
  for (let i = 0; i < 50; i++) {
    const raw = await RawPusher.open(t, `ws://127.0.0.1:${port}/app/${APP.key}?protocol=7`);
    const socketId = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string;
    if (shardOf(socketId) === shard) return { raw, socketId };
    raw.ws.close();
  }
  throw new Error(`no raw socket landed on shard ${shard}`);
}

/** A connected pusher-js client on `shard`. */
async function pusherOnShard(t: T, port: number, shardOf: ShardOf, shard: number, o: ClientOpts): Promise<Pusher> {
  for (let i = 0; i < 50; i++) {
    const p = pusherClient(t, port, o);
    if (shardOf(await connected(p)) === shard) return p;
    p.disconnect();
  }
  throw new Error(`no pusher-js connection landed on shard ${shard}`);
}

/** A watcher signed in on `shard`, its first report consumed. */
async function watcherOnShard(t: T, port: number, shardOf: ShardOf, shard: number, id: string, watched: string): Promise<Watcher> {
  for (let i = 0; i < 50; i++) {
    const w = await signIn(t, port, id, [watched]);
    await w.next(is('offline', watched));
    if (shardOf(w.p.connection.socket_id) === shard) return w;
    w.p.disconnect();
  }
  throw new Error(`no watcher landed on shard ${shard}`);
}

async function webhookReceiver(t: T): Promise<{ url: string; events: any[] }> {
  const events: any[] = [];
  const srv = createHttpServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    events.push(...(JSON.parse(body) as { events: any[] }).events);
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/`, events };
}

t.test('pusher-js subscribers and webhooks learn that a member on the crashed owner left', async (t) => {
  const rx = await webhookReceiver(t);
  const s = await startServer(t, { workers: 2, pusherApps: [{ ...APP, webhooks: [{ url: rx.url }] }] });
  const ch = channelOwnedBy('presence-pcrash-', 0, 2);
  const shardOf = await pusherShardOf(t, s.port, s.http);
  const viewer = await pusherOnShard(t, s.port, shardOf, 1, { member: { user_id: 'viewer' } });
  const { channel } = await subscribed(viewer, ch);
  const { raw: ghost, socketId } = await rawOnShard(t, s.port, shardOf, 0);
  const auth = sdk(s.port).authorizeChannel(socketId, ch, { user_id: 'ghost', user_info: { n: 1 } });
  const added = nextOn<{ id: string }>(channel, 'pusher:member_added');
  ghost.send({ event: 'pusher:subscribe', data: { channel: ch, auth: auth.auth, channel_data: auth.channel_data } });
  await ghost.event('pusher_internal:subscription_succeeded');
  t.equal((await added).id, 'ghost');
  const removed: string[] = [];
  channel.bind('pusher:member_removed', (m: { id: string }) => removed.push(m.id));

  s.crashShard(0);
  await ghost.waitClose(10_000);
  await until(() => removed.length > 0, 'member_removed for the ghost', 30_000);
  t.same(removed, ['ghost'], 'pusher-js removes the ghost');
  t.equal(channel.members.count, 1, 'only the viewer is left');
  t.equal(channel.members.me?.id, 'viewer', 'the viewer was not told it left');
  await until(() => rx.events.some((e) => e.name === 'member_removed' && e.channel === ch && e.user_id === 'ghost'), 'member_removed webhook', 20_000);

  // Sentinels: a client event and a channel's webhooks, both after anything the reconcile sent.
  const got = nextOn(channel, 'after');
  await sdk(s.port).trigger(ch, 'after', {});
  await got;
  t.same(removed, ['ghost'], 'one member_removed, for the ghost only');
  const probe = channelOwnedBy('probe-', 0, 2);
  await subscribed(viewer, probe);
  viewer.unsubscribe(probe);
  await until(() => rx.events.some((e) => e.name === 'channel_vacated' && e.channel === probe), 'probe vacated webhook', 20_000);
  t.equal(rx.events.filter((e) => e.name === 'member_removed').length, 1, 'one member_removed webhook');
});

t.test('pusher-js clients of the crashed shard come back to the whole member list; the others see them leave and rejoin', async (t) => {
  const s = await startServer(t, { workers: 2, pusherApps: [APP] });
  const ch = channelOwnedBy('presence-rejoin-', 0, 2);
  const shardOf = await pusherShardOf(t, s.port, s.http);
  const stay = await pusherOnShard(t, s.port, shardOf, 1, { member: { user_id: 'stay' } });
  const back = [
    await pusherOnShard(t, s.port, shardOf, 0, { member: { user_id: 'back-1' } }),
    await pusherOnShard(t, s.port, shardOf, 0, { member: { user_id: 'back-2' } }),
  ];
  const channels = [(await subscribed(stay, ch)).channel];
  for (const p of back) channels.push((await subscribed(p, ch)).channel);
  const ids = (c: any): string[] => Object.keys(c.members.members).sort();
  await until(() => channels.every((c) => c.members.count === 3), 'every client sees 3 members');
  const resubscribed = back.map((p) => nextOn(p.channel(ch) as any, 'pusher:subscription_succeeded', () => true, 30_000));

  s.crashShard(0);
  await Promise.all(resubscribed);
  // Before: the replacement answered them before the other shard's members were back, silently, so
  // they never learned of 'stay'.
  await until(() => channels.every((c) => c.members.count === 3), 'every client sees 3 members again', 30_000).catch(() => undefined);
  for (const [i, c] of channels.entries()) t.same(ids(c), ['back-1', 'back-2', 'stay'], `client ${i} lists every member`);
  t.equal(channels[0].members.me?.id, 'stay', 'the survivor was not told it left');

  const got = channels.map((c) => nextOn(c, 'after'));
  await sdk(s.port).trigger(ch, 'after', {});
  await Promise.all(got);
  for (const [i, c] of channels.entries()) t.equal(c.members.count, 3, `client ${i}: still 3 members after a sentinel`);
  const users = await (await sdk(s.port).get({ path: `/channels/${ch}/users` })).json();
  t.same(users.users.map((u: { id: string }) => u.id).sort(), ['back-1', 'back-2', 'stay'], 'the HTTP API agrees');
});

t.test('watchers see a user offline whose connection and online channel were on the crashed shard', async (t) => {
  const s = await startServer(t, { workers: 2, pusherApps: [APP] });
  // A user id whose online channel (src/runtime/hidden-channels.ts) shard 0 owns.
  let user = '';
  for (let n = 0; !user; n++) if (ownerOf(`presence-#online ${Buffer.from(`gone-${n}`).toString('base64url')}`, 2) === 0) user = `gone-${n}`;
  const shardOf = await pusherShardOf(t, s.port, s.http);
  const w = await watcherOnShard(t, s.port, shardOf, 1, 'watcher', user);
  const { raw, socketId } = await rawOnShard(t, s.port, shardOf, 0);
  const signin = sdk(s.port).authenticateUser(socketId, { id: user });
  raw.send({ event: 'pusher:signin', data: signin });
  await raw.event('pusher:signin_success');
  await w.next(is('online', user));

  s.crashShard(0);
  await raw.waitClose(10_000);
  t.same(await w.next(is('offline', user), 30_000), { name: 'offline', user_ids: [user] }, 'the watcher is told');
  await sentinel(s.port, w, 'watcher');
  t.same(w.events, [], 'exactly one offline');
});

t.test('webhooks vacate the channels whose owner and every subscriber were on the crashed shard', async (t) => {
  const rx = await webhookReceiver(t);
  const s = await startServer(t, { workers: 2, pusherApps: [{ ...APP, webhooks: [{ url: rx.url }] }] });
  // Owned by shard 0: one whose only subscriber is there too, one that also has a subscriber on shard 1.
  const alone = channelOwnedBy('presence-alone-', 0, 2);
  const lonely = channelOwnedBy('lonely-', 0, 2);
  const shared = channelOwnedBy('shared-', 0, 2);
  const shardOf = await pusherShardOf(t, s.port, s.http);
  const viewer = await pusherOnShard(t, s.port, shardOf, 1, {});
  await subscribed(viewer, shared);
  const { raw: ghost, socketId } = await rawOnShard(t, s.port, shardOf, 0);
  const auth = sdk(s.port).authorizeChannel(socketId, alone, { user_id: 'ghost' });
  ghost.send({ event: 'pusher:subscribe', data: { channel: alone, auth: auth.auth, channel_data: auth.channel_data } });
  await ghost.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === alone);
  for (const ch of [lonely, shared]) {
    ghost.send({ event: 'pusher:subscribe', data: { channel: ch } });
    await ghost.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === ch);
  }
  const has = (name: string, ch: string, user?: string) => rx.events.some((e) => e.name === name && e.channel === ch && (user === undefined || e.user_id === user));
  await until(() => has('channel_occupied', alone) && has('channel_occupied', lonely) && has('member_added', alone, 'ghost'), 'the occupied webhooks', 20_000);

  s.crashShard(0);
  await ghost.waitClose(10_000);
  await until(() => has('member_removed', alone, 'ghost'), 'member_removed for the member that died with the owner', 30_000);
  await until(() => has('channel_vacated', alone) && has('channel_vacated', lonely), 'channel_vacated for both channels', 30_000);

  // A sentinel: the webhooks of a channel the new shard 0 owns, sent after anything the restart sent.
  const probe = channelOwnedBy('probe-', 0, 2);
  await subscribed(viewer, probe);
  viewer.unsubscribe(probe);
  await until(() => has('channel_vacated', probe), 'probe vacated webhook', 20_000);
  const count = (name: string, ch: string) => rx.events.filter((e) => e.name === name && e.channel === ch).length;
  t.equal(count('channel_vacated', alone), 1, 'the presence channel is vacated once');
  t.equal(count('member_removed', alone), 1, 'its member is removed once');
  t.equal(count('channel_vacated', lonely), 1, 'the public channel is vacated once');
  t.equal(count('channel_vacated', shared), 0, 'a channel with a subscriber left on shard 1 stays occupied');
});
