// The Pusher gateway on two hosts bridged by Redis: presence, triggers, client events, socket_id
// exclusion, channel queries, sendToUser and terminate_connections all span hosts.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { dropNamespace, machineRedis, startHost, until } from './helpers/redis.js';
import { APP, connected, nextOn, nextWithMeta, pusherClient, RawPusher, sdk, subscribed } from './helpers/pusher.js';
import { TestClient } from './helpers/ws-client.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const redis = await machineRedis(t);
t.teardown(() => dropNamespace(redis.port, ns));
// presence-stage-* is served by a custom actor with onMessage (test/fixtures/pusher-actors/stage.ts):
// one activation cluster-wide. No other channel here matches an actor of that folder.
const ACTORS = new URL('./fixtures/pusher-actors', import.meta.url).pathname;
const args = ['--pusher-app-id', APP.id, '--pusher-key', APP.key, '--pusher-secret', APP.secret, '--actors', ACTORS];
const A = await startHost(t, redis.url, ns, { workers: 2, args });
const B = await startHost(t, redis.url, ns, { workers: 1, args });

// A trigger's `data` is an opaque string in Pusher: through Redis it was decoded and encoded again, so
// a subscriber on another host (or on the same one: with --redis every publication comes back through
// Redis) got other bytes than on a server alone: 1.0 as 1, a 20-digit id rounded, escapes undone.
t.test('a trigger\'s string `data` reaches subscribers on every host byte for byte, live and replayed', async (t) => {
  const sent = ['{"id": 12345678901234567891, "price": 1.0}', '{"b":1,"2":"x","1":"y"}', '{"u":"\\u00e9\\ud83d\\ude00","n":[1e3, -0]}', 'plain text'];
  const rawOn = async (port: number, channel: string) => {
    const raw = await RawPusher.open(t, `ws://127.0.0.1:${port}/app/${APP.key}?protocol=7`);
    await raw.event('pusher:connection_established');
    raw.send({ event: 'pusher:subscribe', data: { channel } });
    await raw.event('pusher_internal:subscription_succeeded');
    return raw;
  };
  const onB = await rawOn(B.port, 'verbatim-redis');
  const onA = await rawOn(A.port, 'verbatim-redis');
  const nat = await TestClient.connect(`ws://127.0.0.1:${B.port}/ws`);
  t.teardown(() => nat.close());
  const natText: string[] = [];
  nat.ws.on('message', (m) => natText.push(m.toString()));
  t.equal((await nat.request({ op: 'subscribe', channel: 'verbatim-redis' })).ok, true);

  const backend = sdk(A.port);
  for (const data of sent) {
    t.equal((await backend.trigger('verbatim-redis', 'e', data)).status, 200);
    t.equal((await backend.trigger('cache-verbatim-redis', 'e', data)).status, 200);
  }
  await backend.trigger('verbatim-redis', 'sentinel', 'end');
  for (const raw of [onA, onB]) await raw.event('sentinel');
  await nat.next((f) => f.op === 'message' && f.event === 'sentinel');
  t.same(onB.frames.filter((f) => f.event === 'e').map((f) => f.data), sent, 'host B: each data string unchanged');
  t.same(onA.frames.filter((f) => f.event === 'e').map((f) => f.data), sent, 'host A: each data string unchanged');
  const natData = natText.filter((m) => m.includes('"event":"e"')).map((m) => /"data":(.*),"offset":/.exec(m)![1]);
  t.same(natData, [...sent.slice(0, 3), '"plain text"'], 'native on host B: the same JSON text as the value');

  // A cache channel replays its last event from the Redis stream to a new subscriber on host B.
  const late = await RawPusher.open(t, `ws://127.0.0.1:${B.port}/app/${APP.key}?protocol=7`);
  await late.event('pusher:connection_established');
  late.send({ event: 'pusher:subscribe', data: { channel: 'cache-verbatim-redis' } });
  t.equal((await late.event('e')).data, sent[sent.length - 1], 'replayed unchanged');
  const late2 = await RawPusher.open(t, `ws://127.0.0.1:${B.port}/app/${APP.key}?protocol=7`);
  await late2.event('pusher:connection_established');
  await backend.trigger('cache-verbatim-redis', 'e', sent[0]!);
  late2.send({ event: 'pusher:subscribe', data: { channel: 'cache-verbatim-redis' } });
  t.equal((await late2.event('e')).data, sent[0], 'replayed unchanged (a JSON string)');
});

t.test("client events: user_id on presence channels across hosts, kept in the Redis history", async (t) => {
  const ann = pusherClient(t, A.port, { member: { user_id: 'u-ann' } });
  const bob = pusherClient(t, B.port, { member: { user_id: 'u-bob' } });
  await Promise.all([connected(ann), connected(bob)]);
  // presence-cache-: Bob on host B gets Ann's client event with her user_id (through Redis) …
  const ac = await subscribed(ann, 'presence-cache-uid.x');
  const bc = bob.subscribe('presence-cache-uid.x');
  await nextOn(bc, 'pusher:cache_miss');
  const live = nextWithMeta(bc, 'client-last');
  ac.channel.trigger('client-last', { v: 3 });
  t.same(await live, { data: { v: 3 }, meta: { user_id: 'u-ann' } }, "Bob on host B sees Ann's user_id");
  // … and a late subscriber on host B gets it replayed from the Redis stream, user_id included.
  const late = pusherClient(t, B.port, { member: { user_id: 'u-late' } });
  await connected(late);
  const replayed = await nextWithMeta(late.subscribe('presence-cache-uid.x'), 'client-last');
  t.same(replayed, { data: { v: 3 }, meta: { user_id: 'u-ann' } }, 'the replayed client event keeps its user_id');
});

t.test('through a placed actor (one activation cluster-wide): user_id kept, the sender and socket_id excluded', async (t) => {
  const ann = pusherClient(t, A.port, { member: { user_id: 'u-ann' } });
  const bob = pusherClient(t, B.port, { member: { user_id: 'u-bob' } });
  const [annId] = await Promise.all([connected(ann), connected(bob)]);
  const ac = await subscribed(ann, 'presence-stage-1');
  const bc = await subscribed(bob, 'presence-stage-1');
  const atBob = nextWithMeta(bc.channel, 'client-cue');
  ac.channel.trigger('client-cue', { line: 1 });
  t.same(await atBob, { data: { line: 1 }, meta: { user_id: 'u-ann' } }, "Bob on host B sees Ann's user_id");
  const atAnn = nextWithMeta(ac.channel, 'client-cue');
  bc.channel.trigger('client-cue', { line: 2 });
  // Ann's own line 1 would have reached her before line 2: she was not echoed her client event.
  t.same(await atAnn, { data: { line: 2 }, meta: { user_id: 'u-bob' } }, "Ann on host A sees Bob's, and not her own");
  // A backend trigger with Ann's socket_id goes through the activation too and skips her.
  const next = nextOn(ac.channel, 'news');
  await sdk(B.port).trigger('presence-stage-1', 'news', { n: 1 }, { socket_id: annId });
  await sdk(B.port).trigger('presence-stage-1', 'news', { n: 2 });
  t.same(await next, { n: 2 }, 'the socket_id excluded Ann from the first trigger');
});

t.test('one presence channel and one user across two hosts', async (t) => {
  const ann = pusherClient(t, A.port, { member: { user_id: '1', user_info: { name: 'Ann' } }, user: { id: 'ann' } });
  const bob = pusherClient(t, B.port, { member: { user_id: '2', user_info: { name: 'Bob' } } });
  const [annId] = await Promise.all([connected(ann), connected(bob)]);
  const a = await subscribed(ann, 'presence-room.9');
  const joined = nextOn(a.channel, 'pusher:member_added');
  const b = await subscribed(bob, 'presence-room.9');
  t.equal(b.data.count, 2, 'Bob on host B sees Ann of host A');
  t.equal((await joined).id, '2', 'Ann sees Bob join from the other host');

  // trigger on host A reaches host B; socket_id of a host-A client excludes it on its host
  const atB = nextOn(b.channel, 'news');
  let annGot = false;
  a.channel.bind('news', () => (annGot = true));
  await sdk(B.port).trigger('presence-room.9', 'news', { n: 1 }, { socket_id: annId });
  t.same(await atB, { n: 1 });
  const sentinel = nextOn(a.channel, 'sentinel');
  await sdk(B.port).trigger('presence-room.9', 'sentinel', {});
  await sentinel;
  t.equal(annGot, false, 'socket_id excluded across hosts');

  // client event from host A to host B, with the sender's user_id (it travels through Redis)
  const whisper = nextWithMeta(b.channel, 'client-hi');
  a.channel.trigger('client-hi', { from: 'Ann' });
  t.same(await whisper, { data: { from: 'Ann' }, meta: { user_id: '1' } }, "Bob gets Ann's client event with her user_id");

  // channel queries on either host count both hosts
  const info = await until('both subscribers counted', async () => {
    const r = await (await sdk(A.port).get({ path: '/channels/presence-room.9', params: { info: 'user_count,subscription_count' } })).json();
    return r.subscription_count === 2 ? r : undefined;
  });
  t.same(info, { occupied: true, subscription_count: 2, user_count: 2 });
  const users = await (await sdk(B.port).get({ path: '/channels/presence-room.9/users' })).json();
  t.same(users.users.map((u: any) => u.id).sort(), ['1', '2']);

  // sendToUser from host B reaches Ann, signed in on host A
  ann.signin();
  await until('signed in', () => (ann.user as any).serverToUserChannel?.subscribed);
  const note = nextOn(ann.user as any, 'note');
  await sdk(B.port).sendToUser('ann', 'note', 'hello');
  t.equal(await note, 'hello', 'sendToUser across hosts');

  const left = nextOn(b.channel, 'pusher:member_removed');
  await sdk(B.port).terminateUserConnections('ann');
  t.equal((await left).id, '1', 'terminate_connections on host B closed Ann on host A; she left');
});
