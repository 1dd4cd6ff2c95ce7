// Pusher watchlist events with the real pusher-js (Node build), users signed in with the `pusher`
// server SDK's authenticateUser as a backend would: the first report on sign-in, online once per user
// however many tabs and shards, offline only when the last tab goes, nothing about unwatched users or
// other apps, the per-app limit, and hostile watchlists. Across hosts: test/pusher-watchlist-redis.test.ts.
//
// "Nothing arrived" is never a sleep: the watcher's user is sent a sentinel (sendToUser) once the
// event it must not get would already have been sent — each sign-in below waits for the signed-in
// connection's own first watchlist report, which the server sends only after that connection
// counts as online (so its join was announced, if it was going to be).
import t from 'tap';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer } from 'rt-actors';
import { startServer, api } from './helpers/server.js';
import { APP, APP_B, connected, pusherClient, pusherConnectionsPerShard, RawPusher, sdk, subscribed } from './helpers/pusher.js';
import { channelOwnedBy, ownerOf, until } from './helpers/faults.js';
import { is, sentinel, signIn } from './helpers/watchlist.js';

t.setTimeout(600_000);

const s = await startServer(t, { workers: 2, pusherApps: [APP, { ...APP_B, maxWatchlistSize: 3 }] });

t.test('first report on sign-in, online once for two tabs on both shards, offline after the last tab', async (t) => {
  // Ann is online before the watcher signs in; Bob and Cat are not.
  const ann = await signIn(t, s.port, 'ann', ['sentinel-target']);
  await ann.next(is('offline', 'sentinel-target'));
  const w = await signIn(t, s.port, 'watcher-1', ['ann', 'bob', 'cat']);
  const first = await w.next((e) => e.name === 'online');
  t.same(first.user_ids, ['ann'], 'the first report lists who is online now');
  t.same((await w.next((e) => e.name === 'offline')).user_ids.sort(), ['bob', 'cat'], '… and the watched users who are not');

  // Bob opens a tab, then a second one: one online event.
  const tab1 = await signIn(t, s.port, 'bob', ['x-1']);
  await tab1.next(is('offline', 'x-1'));
  t.same(await w.next(is('online', 'bob')), { name: 'online', user_ids: ['bob'] }, 'bob online');
  const tab2 = await signIn(t, s.port, 'bob', ['x-2']);
  await tab2.next(is('offline', 'x-2'));
  const shards = await until(async () => {
    const per = await pusherConnectionsPerShard(s.http);
    return per.reduce((a, b) => a + b, 0) === 4 ? per : undefined;
  }, 'connections counted on both shards');
  t.equal(shards.filter((n) => n > 0).length, 2, `the four connections are on both shards (${JSON.stringify(shards)})`);

  // One tab closes: bob is still online, so no offline (the sentinel comes after it would have).
  tab1.p.disconnect();
  await until(async () => (await pusherConnectionsPerShard(s.http)).reduce((a, b) => a + b, 0) === 3, 'tab 1 gone');
  const leaveWatcher = await signIn(t, s.port, 'late-bob-watcher', ['bob']);
  t.same(await leaveWatcher.next((e) => e.name === 'online'), { name: 'online', user_ids: ['bob'] }, 'a new watcher still sees bob online');
  await sentinel(s.port, w, 'watcher-1');
  t.same(w.events, [], 'no second online for the second tab, and no offline while a tab is open');

  // The last tab closes: offline, once.
  tab2.p.disconnect();
  t.same(await w.next((e) => e.name === 'offline'), { name: 'offline', user_ids: ['bob'] }, 'bob offline after his last tab');
  t.same(await leaveWatcher.next((e) => e.name === 'offline'), { name: 'offline', user_ids: ['bob'] }, 'every watcher is told');
  await sentinel(s.port, w, 'watcher-1');
  t.same(w.events, [], 'exactly one offline');

  // Ann leaves too.
  ann.p.disconnect();
  t.same(await w.next((e) => e.name === 'offline'), { name: 'offline', user_ids: ['ann'] }, 'ann offline');
});

t.test('unwatched users and other apps produce nothing; each app has its own users', async (t) => {
  const w = await signIn(t, s.port, 'watcher-2', ['dan']);
  await w.next(is('offline', 'dan'));
  // Eve is watched by nobody here; app B's dan is not the default app's dan.
  const eve = await signIn(t, s.port, 'eve', ['y-1']);
  await eve.next(is('offline', 'y-1'));
  const danB = await signIn(t, s.port, 'dan', ['y-2'], APP_B);
  await danB.next(is('offline', 'y-2'));
  const bWatcher = await signIn(t, s.port, 'watcher-b', ['dan'], APP_B);
  t.same(await bWatcher.next((e) => e.name === 'online'), { name: 'online', user_ids: ['dan'] }, "app B's watcher sees app B's dan online");
  await sentinel(s.port, w, 'watcher-2');
  t.same(w.events, [], "the default app's watcher hears nothing of eve or of app B's dan");

  // The default app's dan signs in: only the default app's watcher is told.
  const dan = await signIn(t, s.port, 'dan', ['y-3']);
  await dan.next(is('offline', 'y-3'));
  t.same(await w.next((e) => e.name === 'online'), { name: 'online', user_ids: ['dan'] }, "the default app's dan online");
  await sentinel(s.port, bWatcher, 'watcher-b', APP_B);
  t.same(bWatcher.events, [], "app B's watcher hears nothing of the default app's dan");

  // Hidden channels are nobody's business: not listed, not subscribable by name.
  const listed = await api(s.http, '/api/channels');
  t.same(listed.body.channels.filter((c: { name: string }) => c.name.includes('online')), [], '/api/channels does not list online channels');
  const pusherList = (await sdk(s.port).get({ path: '/channels' })) as Response;
  t.same((await pusherList.json()).channels, {}, "the Pusher API's channel list is empty");
});

t.test('limits and hostile watchlists: documented errors, sign-in kept, no crash', async (t) => {
  const open = async (app = APP): Promise<{ raw: RawPusher; sid: string }> => {
    const raw = await RawPusher.open(t, `${s.url}/app/${app.key}?protocol=7`);
    const sid = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id;
    return { raw, sid };
  };
  const signin = (raw: RawPusher, sid: string, user: Record<string, unknown>, app = APP) =>
    raw.send({ event: 'pusher:signin', data: sdk(s.port, app).authenticateUser(sid, user as never) });
  const report = async (raw: RawPusher) => JSON.parse((await raw.event('pusher_internal:watchlist_events')).data).events;

  // Over app B's limit (3): the first three distinct ids are watched, the client is told the rest are not.
  {
    const { raw, sid } = await open(APP_B);
    signin(raw, sid, { id: 'many', watchlist: ['a', 'b', 'a', 'c', 'd', 'e', 'd'] }, APP_B);
    await raw.event('pusher:signin_success');
    t.match((await raw.event('pusher:error')).data, { code: null, message: /watchlist trimmed: 2 user ids past this app's limit of 3/ }, 'trimmed, and told');
    t.same(await report(raw), [{ name: 'offline', user_ids: ['a', 'b', 'c'] }], 'the first three distinct ids are watched');
  }
  // Duplicates count once; the user's own id is left out.
  {
    const { raw, sid } = await open();
    signin(raw, sid, { id: 'dup', watchlist: ['p', 'p', 'dup', 'q', 'p'] });
    await raw.event('pusher:signin_success');
    t.same(await report(raw), [{ name: 'offline', user_ids: ['p', 'q'] }], 'duplicates once, own id left out');
  }
  // A huge list in the default app (limit 100): trimmed to 100.
  {
    const { raw, sid } = await open();
    const ids = Array.from({ length: 1000 }, (_, i) => `h${i}`);
    signin(raw, sid, { id: 'huge', watchlist: ids });
    await raw.event('pusher:signin_success');
    t.match((await raw.event('pusher:error')).data.message, /trimmed: 900 user ids past this app's limit of 100/);
    t.same((await report(raw))[0].user_ids, ids.slice(0, 100), 'the first 100 are watched');
  }
  // Not a list, or not ids (strings or numbers): the watchlist is refused, the sign-in stands.
  for (const bad of ['ann', { ann: true }, [true, false], [{ id: 1 }], [1.5], [12345678901234567891], ['ok', ''], ['x'.repeat(201)], [null]]) {
    const { raw, sid } = await open();
    signin(raw, sid, { id: 'bad-list', watchlist: bad });
    await raw.event('pusher:signin_success');
    t.match((await raw.event('pusher:error')).data, { code: null, message: /^watchlist refused/ }, `refused: ${JSON.stringify(bad).slice(0, 40)}`);
    await sdk(s.port).sendToUser('bad-list', 'still-signed-in', {});
    await raw.event('still-signed-in');
    raw.ws.close();
  }
  // user_data past 10,000 characters: the sign-in is refused (4009), as a bad signature is.
  {
    const { raw, sid } = await open();
    signin(raw, sid, { id: 'too-big', watchlist: Array.from({ length: 2000 }, (_, i) => `big-${i}`) });
    t.match(await raw.waitClose(), { code: 4009, reason: /user_data is longer than 10000/ }, 'closed with 4009');
  }
  // The server still serves.
  const after = await signIn(t, s.port, 'after', ['nobody-here']);
  t.same(await after.next((e) => e.name === 'offline'), { name: 'offline', user_ids: ['nobody-here'] }, 'still serving');
});

t.test('online channels send no webhooks', async (t) => {
  const events: { name: string; channel: string }[] = [];
  const rx = createHttpServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    events.push(...(JSON.parse(body) as { events: { name: string; channel: string }[] }).events);
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
  t.teardown(() => rx.close());
  const hs = await startServer(t, { workers: 2, pusherApps: [{ ...APP, webhooks: [{ url: `http://127.0.0.1:${(rx.address() as AddressInfo).port}/` }] }] });
  const w = await signIn(t, hs.port, 'hook-watcher', ['gus']);
  await w.next(is('offline', 'gus'));
  const gus = await signIn(t, hs.port, 'gus', ['z-1']);
  await gus.next(is('offline', 'z-1'));
  await w.next(is('online', 'gus'));
  gus.p.disconnect();
  await w.next(is('offline', 'gus'));
  // A sentinel channel owned by the shard that owns gus's online channel (owner = FNV-1a of the name,
  // docs/architecture.md; the name is the server's, see src/runtime/hidden-channels.ts): its webhooks
  // leave through the same queue, after anything that channel would have sent.
  const hidden = `presence-#online ${Buffer.from('gus').toString('base64url')}`;
  const name = channelOwnedBy('sentinel-', ownerOf(hidden, 2), 2);
  const p = pusherClient(t, hs.port);
  await connected(p);
  await subscribed(p, name);
  p.unsubscribe(name);
  await until(() => events.some((e) => e.name === 'channel_vacated' && e.channel === name), 'the sentinel is vacated');
  t.same(events, [{ name: 'channel_occupied', channel: name }, { name: 'channel_vacated', channel: name }], 'only the sentinel channel: nothing of online channels');
});

t.test('maxWatchlistSize 0: watchlist events off for the app', async (t) => {
  const off = await startServer(t, { workers: 2, pusherApps: [{ ...APP, maxWatchlistSize: 0 }] });
  const raw = await RawPusher.open(t, `${off.url}/app/${APP.key}?protocol=7`);
  const sid = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id;
  raw.send({ event: 'pusher:signin', data: sdk(off.port).authenticateUser(sid, { id: 'w-off', watchlist: ['hal'] } as never) });
  await raw.event('pusher:signin_success');
  const hal = await RawPusher.open(t, `${off.url}/app/${APP.key}?protocol=7`);
  const hsid = JSON.parse((await hal.event('pusher:connection_established')).data).socket_id;
  hal.send({ event: 'pusher:signin', data: sdk(off.port).authenticateUser(hsid, { id: 'hal' } as never) });
  await hal.event('pusher:signin_success');
  await sdk(off.port).sendToUser('w-off', 'sentinel', {});
  await raw.event('sentinel');
  t.same(raw.frames.filter((f) => f.event === 'pusher_internal:watchlist_events' || f.event === 'pusher:error'), [], 'no watchlist frames and no error');
});

t.test('a bad maxWatchlistSize fails the start, naming the key', async (t) => {
  for (const bad of [-1, 2.5, '10', 1001]) {
    await t.rejects(
      createServer({ port: 0, host: '127.0.0.1', workers: 1, logLevel: 'error', env: {}, pusherApps: [{ ...APP, maxWatchlistSize: bad }] } as never),
      /pusherApps\[0\]\.maxWatchlistSize must be an integer from 0 to 1000/,
      `maxWatchlistSize: ${JSON.stringify(bad)} is refused`,
    );
  }
});
