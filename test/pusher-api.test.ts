// Pusher's signed HTTP API with the official `pusher` Node SDK, unchanged: trigger (socket_id
// exclusion, info), triggerBatch, channel queries, presence users, sendToUser, terminate_connections;
// unsigned, expired and wrong signatures get 401 with Pusher's wording; apps are isolated.
import t from 'tap';
import { createHash, createHmac } from 'node:crypto';
import { startServer, api, API_KEY, JWT_SECRET } from './helpers/server.js';
import { signJwt } from 'rt-actors';
import { TestClient } from './helpers/ws-client.js';
import { APP, APP_B, connected, nextOn, pusherClient, pusherOptions, RawPusher, sdk, subscribed } from './helpers/pusher.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

// One server for every subtest (each uses channels and users of its own); it serves a second app too.
const shared = await startServer(t, pusherOptions({ pusherApps: [APP_B] }));

async function json(p: Promise<Response>): Promise<any> {
  return (await p).json();
}

t.test('trigger and triggerBatch reach pusher-js and native subscribers; socket_id excludes; info answers', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const a = pusherClient(t, s.port);
  const b = pusherClient(t, s.port);
  const [aId] = await Promise.all([connected(a), connected(b)]);
  const ca = (await subscribed(a, 'news')).channel;
  const cb = (await subscribed(b, 'news')).channel;
  const nat = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => nat.close());
  await nat.request({ op: 'subscribe', channel: 'news' });

  const atB = nextOn(cb, 'posted');
  const atNat = nat.next((f) => f.op === 'message' && f.event === 'posted');
  let atA = false;
  ca.bind('posted', () => (atA = true));
  const r = await backend.trigger('news', 'posted', { title: 'hi' }, { socket_id: aId, info: 'subscription_count' });
  t.equal(r.status, 200);
  t.same(await r.json(), { channels: { news: { subscription_count: 3 } } }, 'info=subscription_count');
  t.same(await atB, { title: 'hi' }, 'pusher-js gets it');
  t.same((await atNat).data, { title: 'hi' }, 'the native client gets the parsed object');
  const sentinel = nextOn(ca, 'sentinel');
  await backend.trigger('news', 'sentinel', {});
  await sentinel;
  t.equal(atA, false, 'socket_id is excluded');

  const got: string[] = [];
  const two = new Promise<void>((resolve) => cb.bind_global((ev: string) => {
    if (ev === 'first' || ev === 'second') got.push(ev);
    if (got.length === 2) resolve();
  }));
  const br = await backend.triggerBatch([
    { channel: 'news', name: 'first', data: '1' },
    { channel: 'news', name: 'second', data: { n: 2 } },
  ]);
  t.equal(br.status, 200);
  await two;
  t.same(got, ['first', 'second'], 'batch events arrive in order');

  // many channels at once
  const multi = await backend.trigger(['news', 'other'], 'x', 'y');
  t.equal(multi.status, 200);

  // A channel named twice in one trigger gets the event once (a sentinel after it: nothing more comes).
  const twice: unknown[] = [];
  cb.bind('twice', (d: unknown) => twice.push(d));
  const afterTwice = nextOn(cb, 'after-twice');
  const dup = await backend.trigger(['news', 'news'], 'twice', { n: 1 }, { info: 'subscription_count' });
  t.equal(dup.status, 200);
  t.same(await dup.json(), { channels: { news: { subscription_count: 3 } } }, 'info names the channel once');
  t.equal((await backend.trigger('news', 'after-twice', {})).status, 200);
  await afterTwice;
  t.same(twice, [{ n: 1 }], 'delivered once');
});

t.test("trigger with its parameters in the signed query string and an empty body, as Pusher's HTTP API reference allows", async (t) => {
  const s = shared;
  const path = `/apps/${APP.id}/events`;
  // Signed as the reference says: every query parameter but auth_signature, lowercased, sorted, unescaped.
  const post = (event: [string, string][], body = '', signedEvent = event): Promise<Response> => {
    const auth: [string, string][] = [['auth_key', APP.key], ['auth_timestamp', String(Math.floor(Date.now() / 1000))], ['auth_version', '1.0']];
    if (body) auth.push(['body_md5', createHash('md5').update(body).digest('hex')]);
    const toSign = [...auth, ...signedEvent].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('&');
    const sig = createHmac('sha256', APP.secret).update(`POST\n${path}\n${toSign}`).digest('hex');
    const q = new URLSearchParams([...auth, ...event, ['auth_signature', sig]]).toString();
    return fetch(`${s.http}${path}?${q}`, { method: 'POST', ...(body ? { body } : {}) });
  };
  const a = pusherClient(t, s.port);
  const b = pusherClient(t, s.port);
  const [aId] = await Promise.all([connected(a), connected(b)]);
  const qa = (await subscribed(a, 'query-a')).channel;
  const qb = (await subscribed(b, 'query-b')).channel;
  const qa2 = (await subscribed(b, 'query-a')).channel;

  const atA = nextOn(qa, 'from-query');
  const atB = nextOn(qb, 'from-query');
  const r = await post([['name', 'from-query'], ['data', '{"n":1}'], ['channels[]', 'query-a'], ['channels[]', 'query-b'], ['info', 'subscription_count']]);
  t.equal(r.status, 200, 'channels[] in the query string, empty body: 200');
  t.same(await r.json(), { channels: { 'query-a': { subscription_count: 2 }, 'query-b': { subscription_count: 1 } } }, 'info from the query string answers');
  t.same(await atA, { n: 1 }, 'the first channel gets it');
  t.same(await atB, { n: 1 }, 'the second channel gets it');

  // socket_id from the query excludes: a's first event on query-a is the one after the excluded one.
  const firstAtA = nextOn(qa, 'only');
  const atB2 = nextOn(qa2, 'only', (d: any) => d === 'excluded');
  t.equal((await post([['name', 'only'], ['data', 'excluded'], ['channel', 'query-a'], ['socket_id', aId]])).status, 200, 'channel and socket_id in the query string');
  await atB2;
  t.equal((await post([['name', 'only'], ['data', 'after'], ['channel', 'query-a']])).status, 200);
  t.equal(await firstAtA, 'after', 'socket_id in the query string excludes that connection');

  // The query parameters are signed: one changed after signing is refused.
  const forged = await post([['name', 'from-query'], ['data', 'forged'], ['channel', 'query-a']], '', [['name', 'from-query'], ['data', 'signed'], ['channel', 'query-a']]);
  t.equal(forged.status, 401, 'a query parameter changed after signing: 401');
  t.match((await forged.json()).error.message, /^Invalid signature/);

  // Both at once is ambiguous (the reference does not say which wins): refused, naming the parameters.
  const both = await post([['socket_id', aId]], JSON.stringify({ name: 'e', channel: 'query-a', data: '1' }));
  t.equal(both.status, 400, 'event parameters in both the body and the query string: 400');
  t.match((await both.json()).error.message, /both in the body and in the query string \(socket_id\)/);
  const none = await post([]);
  t.equal(none.status, 400, 'neither a body nor query parameters: 400');
  t.match((await none.json()).error.message, /no event: send a JSON body .* or the query parameters name, data and channel or channels\[\]/);
  const noChannel = await post([['name', 'e'], ['data', '1']]);
  t.equal(noChannel.status, 400, 'no channel in the query string: 400');
  const plainChannels = await post([['name', 'e'], ['data', '1'], ['channels', 'query-a']]);
  t.equal(plainChannels.status, 400, '"channels" without [] in the query string: 400');
  t.match((await plainChannels.json()).error.message, /channels\[\]=a&channels\[\]=b/, 'the answer shows how to write a list');
});

t.test('channel queries: list with filter_by_prefix and info, one channel, presence users', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const p = pusherClient(t, s.port, { member: { user_id: '7', user_info: { name: 'Sev' } } });
  const q = pusherClient(t, s.port, { member: { user_id: '8' } });
  await Promise.all([connected(p), connected(q)]);
  await subscribed(p, 'presence-lobby');
  await subscribed(q, 'presence-lobby');
  await subscribed(p, 'public-a');
  await subscribed(p, 'private-b');

  const all = await json(backend.get({ path: '/channels' }));
  t.ok(['presence-lobby', 'private-b', 'public-a'].every((c) => c in all.channels), 'every occupied channel is listed');
  t.notOk(Object.keys(all.channels).some((c) => c.includes(' ')), "no other app's channel is listed");
  const pres = await json(backend.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count,subscription_count' } }));
  t.same(pres, { channels: { 'presence-lobby': { user_count: 2, subscription_count: 2 } } });
  const bad = await backend.get({ path: '/channels', params: { info: 'user_count' } }).then(() => null, (e) => e);
  t.equal(bad?.status, 400, 'user_count without a presence- prefix: 400');

  t.same(await json(backend.get({ path: '/channels/presence-lobby', params: { info: 'user_count,subscription_count' } })), { occupied: true, subscription_count: 2, user_count: 2 });
  t.same(await json(backend.get({ path: '/channels/empty-one' })), { occupied: false });
  const users = await json(backend.get({ path: '/channels/presence-lobby/users' }));
  t.same(users.users.map((u: any) => u.id).sort(), ['7', '8']);
});

t.test('user sign-in, sendToUser and terminateUserConnections', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const p = pusherClient(t, s.port, { user: { id: 'u-42', user_info: { name: 'Zed' } } });
  await connected(p);
  p.signin();
  await new Promise<void>((resolve) => {
    const check = () => ((p.user as any).user_data ? resolve() : setTimeout(check, 10));
    check();
  });
  // the #server-to-user channel is subscribed after signin_success
  const deadline = Date.now() + 5000;
  while (!(p.user as any).serverToUserChannel?.subscribed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const got = nextOn(p.user as any, 'notice');
  const r = await backend.sendToUser('u-42', 'notice', { text: 'hello you' });
  t.equal(r.status, 200);
  t.same(await got, { text: 'hello you' }, 'sendToUser reaches the signed-in connection');

  // the same user through /api/publish (user) reaches it too
  const got2 = nextOn(p.user as any, 'notice2');
  await api(s.http, '/api/publish', { user: 'u-42', event: 'notice2', data: 1 });
  t.equal(await got2, 1);

  const closed = new Promise<void>((resolve) => p.connection.bind('state_change', (st: any) => st.current !== 'connected' && resolve()));
  const term = await backend.terminateUserConnections('u-42');
  t.equal(term.status, 200);
  await closed;
  t.pass('terminate_connections closes the user\'s connection');
});

t.test('unsigned, expired and wrong signatures: 401 with Pusher\'s wording; bad bodies: 4xx', async (t) => {
  const s = shared;
  const base = `${s.http}/apps/${APP.id}`;
  const unsigned = await fetch(`${base}/channels`);
  t.equal(unsigned.status, 401);
  t.equal(
    (await unsigned.json()).error.message,
    'Missing authentication parameters: auth_key, auth_timestamp, auth_signature (auth_key, auth_timestamp and auth_signature are required; auth_version, if given, must be 1.0)',
    'the 401 names what is missing and what is required',
  );
  const noSignature = await fetch(`${base}/channels?auth_key=${APP.key}&auth_timestamp=${Math.floor(Date.now() / 1000)}`);
  t.equal(noSignature.status, 401);
  t.match((await noSignature.json()).error.message, /^Missing authentication parameters: auth_signature \(/, 'only auth_signature is named as missing');

  const signed = (method: string, path: string, body: string, ts: number, secret = APP.secret, key = APP.key): string => {
    const params: Record<string, string> = { auth_key: key, auth_timestamp: String(ts), auth_version: '1.0' };
    if (body) params.body_md5 = createHash('md5').update(body).digest('hex');
    const q = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
    const sig = createHmac('sha256', secret).update(`${method}\n${path}\n${q}`).digest('hex');
    return `${path}?${q}&auth_signature=${sig}`;
  };
  const now = Math.floor(Date.now() / 1000);
  const old = await fetch(s.http + signed('GET', `/apps/${APP.id}/channels`, '', now - 601));
  t.equal(old.status, 401);
  t.match((await old.json()).error.message, /^Timestamp expired: Given timestamp \(\d+\) not within 600s of server time/);
  const wrong = await fetch(s.http + signed('GET', `/apps/${APP.id}/channels`, '', now, 'not-the-secret'));
  t.equal(wrong.status, 401);
  t.match((await wrong.json()).error.message, /^Invalid signature: you should have sent HmacSHA256Hex/);
  const key = await fetch(s.http + signed('GET', `/apps/${APP.id}/channels`, '', now, APP.secret, 'other'));
  t.match((await key.json()).error.message, /Unknown auth_key/);
  // body tampered after signing
  const body = JSON.stringify({ name: 'e', channel: 'c', data: '1' });
  const tampered = await fetch(s.http + signed('POST', `/apps/${APP.id}/events`, body, now), { method: 'POST', body: body.replace('"1"', '"2"') });
  t.equal(tampered.status, 401, 'body_md5 mismatch');
  const good = await fetch(s.http + signed('GET', `/apps/${APP.id}/channels`, '', now));
  t.equal(good.status, 200, 'a correctly signed call passes');
  // As the 401 says, auth_version is not required: a call signed without it passes too.
  const unversioned = `auth_key=${APP.key}&auth_timestamp=${now}`;
  const unversionedSig = createHmac('sha256', APP.secret).update(`GET\n/apps/${APP.id}/channels\n${unversioned}`).digest('hex');
  t.equal((await fetch(`${base}/channels?${unversioned}&auth_signature=${unversionedSig}`)).status, 200, 'a call signed without auth_version passes');
  const unknownApp = await fetch(s.http + signed('GET', `/apps/999/channels`, '', now));
  t.equal(unknownApp.status, 404);

  const backend = sdk(s.port);
  const big = await backend.trigger('c', 'e', 'x'.repeat(11 * 1024)).then(() => null, (e) => e);
  t.equal(big?.status, 413, 'data over 10 KB: 413');
  const badBody = JSON.stringify({ name: 'e', channel: 'bad name', data: '1' });
  const badName = await fetch(s.http + signed('POST', `/apps/${APP.id}/events`, badBody, now), { method: 'POST', body: badBody });
  t.equal(badName.status, 400, 'invalid channel: 400');
  const notJson = await fetch(s.http + signed('POST', `/apps/${APP.id}/events`, 'nope', now), { method: 'POST', body: 'nope' });
  t.equal(notJson.status, 400, 'body that is not JSON: 400');
  const batch = await backend.triggerBatch(Array.from({ length: 11 }, () => ({ channel: 'c', name: 'e', data: '1' }))).then(() => null, (e) => e);
  t.equal(batch?.status, 400, 'more than 10 events in a batch: 400');
});

t.test('apps are isolated; the first app shares channels with /api and native clients', async (t) => {
  const s = shared;
  const a = pusherClient(t, s.port);
  const b = pusherClient(t, s.port, { app: APP_B });
  await Promise.all([connected(a), connected(b)]);
  const ca = (await subscribed(a, 'news')).channel;
  const cbn = (await subscribed(b, 'news')).channel;
  let bGotA = false;
  cbn.bind('for-a', () => (bGotA = true));
  const atA = nextOn(ca, 'for-a');
  await sdk(s.port).trigger('news', 'for-a', {});
  await atA;
  const atB = nextOn(cbn, 'for-b');
  await sdk(s.port, APP_B).trigger('news', 'for-b', {});
  await atB;
  t.equal(bGotA, false, "app B's news is not app A's news");
  const atA2 = nextOn(ca, 'from-api');
  await api(s.http, '/api/publish', { channel: 'news', event: 'from-api', data: 1 });
  t.equal(await atA2, 1, '/api/publish reaches the default app');
  const listB = await json(sdk(s.port, APP_B).get({ path: '/channels' }));
  t.same(listB, { channels: { news: {} } }, 'app B lists its own channel under its own name');
  const wrongKey = await fetch(`${s.http}/apps/${APP_B.id}/channels?auth_key=${APP.key}&auth_timestamp=${Math.floor(Date.now() / 1000)}&auth_version=1.0&auth_signature=00`);
  t.equal(wrongKey.status, 401, "app A's key does not sign for app B");
  t.ok(API_KEY);
});

t.test("no app's credentials reach another app's users by spelling the app separator in a user id", async (t) => {
  const s = shared;
  const b = pusherClient(t, s.port, { app: APP_B, user: { id: '42' } });
  await connected(b);
  b.signin();
  const deadline = Date.now() + 5000;
  while (!(b.user as any).serverToUserChannel?.subscribed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  let leaked = false;
  (b.user as any).bind('leak', () => (leaked = true));

  // The default app has no internal suffix: its user "42 @2002" would be app B's user 42.
  const send = await sdk(s.port).sendToUser(`42 @${APP_B.id}`, 'leak', {}).then(() => null, (e) => e);
  t.equal(send?.status, 400, 'sendToUser to such an id: 400');
  t.match(send?.body, /may not contain/);
  const term = await sdk(s.port).terminateUserConnections(`42%20%40${APP_B.id}`).then(() => null, (e) => e);
  t.equal(term?.status, 400, 'terminate_connections of such an id: 400');

  const a = pusherClient(t, s.port, { user: { id: `7 @${APP_B.id}` } });
  await connected(a);
  const closed = new Promise<any>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the sign-in was not refused')), 5000);
    a.connection.bind('error', (e: any) => e?.data?.code && (clearTimeout(timer), resolve(e.data)));
  });
  a.signin();
  t.match(await closed, { code: 4009, message: /may not contain/ }, 'signing in as such an id: 4009');

  // Nor do the native paths: the API key's user messages and kicks, a JWT's sub.
  const byApi = await api(s.http, '/api/publish', { user: `42 @${APP_B.id}`, event: 'leak', data: {} });
  t.match(byApi, { status: 400, body: { error: { code: 'bad_request', message: /"user": a user id may not contain/ } } }, '/api/publish to such a user: 400');
  const kick = await api(s.http, `/api/users/42%20%40${APP_B.id}/disconnect`, {});
  t.match(kick, { status: 400, body: { error: { message: /may not contain/ } } }, '/api/users/:id/disconnect of such a user: 400');
  const jwt = signJwt({ sub: `42 @${APP_B.id}` }, { secret: JWT_SECRET });
  const refused = await TestClient.connect(`${s.url}/ws?token=${jwt}`).then(() => null, (e: Error) => e.message);
  t.match(refused, /HTTP 401/, 'a JWT whose sub is such an id: refused before the upgrade');

  const sentinel = nextOn(b.user as any, 'sentinel');
  await sdk(s.port, APP_B).sendToUser('42', 'sentinel', 1);
  t.equal(await sentinel, 1, "app B's own user still gets its messages");
  t.equal(leaked, false, "nothing of the default app's reached app B's user");
  t.equal(b.connection.state, 'connected', "app B's user is still connected");
});

t.test("terminate_connections reaches its own app's users and presence members only", async (t) => {
  const s = shared;
  // App B: one connection signed in as iso-42 (also presence member iso-43), one presence member iso-43 only.
  const signedIn = pusherClient(t, s.port, { app: APP_B, user: { id: 'iso-42' }, member: { user_id: 'iso-43' } });
  const member = pusherClient(t, s.port, { app: APP_B, member: { user_id: 'iso-43' } });
  await Promise.all([connected(signedIn), connected(member)]);
  signedIn.signin();
  const deadline = Date.now() + 5000;
  while (!(signedIn.user as any).serverToUserChannel?.subscribed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const channels = [(await subscribed(signedIn, 'presence-iso')).channel, (await subscribed(member, 'presence-iso')).channel];
  const states: string[] = [];
  for (const p of [signedIn, member]) p.connection.bind('state_change', (st: any) => states.push(st.current));

  // The default app's users of the same ids are other people.
  t.equal((await sdk(s.port).terminateUserConnections('iso-42')).status, 200);
  t.equal((await sdk(s.port).terminateUserConnections('iso-43')).status, 200);
  const sentinels = channels.map((c) => nextOn(c, 'sentinel'));
  await sdk(s.port, APP_B).trigger('presence-iso', 'sentinel', 1);
  await Promise.all(sentinels);
  t.same(states, [], "the default app's terminate_connections closed nothing of app B");

  // App B's own call closes its presence member iso-43 too, as the default app's does for its own.
  const closed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("app B's presence member iso-43 was not closed")), 5000);
    member.connection.bind('state_change', (st: any) => st.current !== 'connected' && (clearTimeout(timer), resolve()));
  });
  t.equal((await sdk(s.port, APP_B).terminateUserConnections('iso-43')).status, 200);
  await closed;
  t.pass("app B's terminate_connections closes its own presence member");
});

t.test('trigger: a string `data` reaches every subscriber as it was sent, byte for byte', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  await raw.event('pusher:connection_established');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'verbatim' } });
  await raw.event('pusher_internal:subscription_succeeded');
  const nat = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => nat.close());
  const natText: string[] = [];
  nat.ws.on('message', (m) => natText.push(m.toString()));
  t.equal((await nat.request({ op: 'subscribe', channel: 'verbatim' })).ok, true);

  // What Laravel's PHP SDK sends: data already JSON-encoded, as the application wrote it.
  const sent = ['{"id": 12345678901234567891, "price": 1.0}', '{"b":1,"2":"x","1":"y"}', '{"a":1,"a":2}', '[1e400, -0]', 'plain text'];
  for (const data of sent) t.equal((await backend.trigger('verbatim', 'e', data)).status, 200);
  await backend.trigger('verbatim', 'sentinel', 'end');
  await raw.event('sentinel');
  await nat.next((f) => f.op === 'message' && f.event === 'sentinel');
  t.same(raw.frames.filter((f) => f.event === 'e').map((f) => f.data), sent, 'pusher: each data string unchanged');
  const natData = natText.filter((m) => m.includes('"event":"e"')).map((m) => /"data":(.*),"offset":/.exec(m)![1]);
  t.same(natData, [...sent.slice(0, 4), '"plain text"'], 'native: the same JSON text as the value (a non-JSON string as a string)');
});

t.test('sendToUser: a string `data` reaches the user as it was sent, byte for byte, as on a channel', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  const socketId = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string;
  raw.send({ event: 'pusher:signin', data: backend.authenticateUser(socketId, { id: 'verbatim-user' }) });
  await raw.event('pusher:signin_success');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'verbatim-too' } });
  await raw.event('pusher_internal:subscription_succeeded');
  // The same user on the native protocol gets the value.
  const jwt = signJwt({ sub: 'verbatim-user', exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });
  const nat = await TestClient.connect(`${s.url}/ws?token=${jwt}`);
  t.teardown(() => nat.close());

  const sent = ['{"id": 12345678901234567891, "price": 1.0}', '{"b":1,"2":"x","1":"y"}', '{"a":"x\\/y"}', 'plain text'];
  for (const data of sent) t.equal((await backend.sendToUser('verbatim-user', 'e', data)).status, 200);
  // One trigger naming the user and a channel: both copies unchanged.
  const both = '{"n": 12345678901234567891}';
  t.equal((await backend.post({ path: '/events', body: { name: 'both', channels: ['#server-to-user-verbatim-user', 'verbatim-too'], data: both } })).status, 200);
  await backend.sendToUser('verbatim-user', 'sentinel', 'end');
  await raw.next((f) => f.event === 'sentinel');
  t.same(raw.frames.filter((f) => f.event === 'e').map((f) => f.data), sent, 'each data string unchanged');
  const copies = raw.frames.filter((f) => f.event === 'both').map((f) => [f.channel, f.data]).sort();
  t.same(copies, [['#server-to-user-verbatim-user', both], ['verbatim-too', both]], 'user and channel copies of one trigger unchanged');
  const n = await nat.next((f) => f.op === 'message' && f.event === 'e');
  t.same(n.data, { id: 12345678901234567891, price: 1 }, 'native: the value');
});

t.test("Laravel's integer user ids sign in: sendToUser, watchlist and terminate_connections reach them", async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  // What Laravel's pusher broadcaster signs for `['id' => $user->id, 'watchlist' => [...]]`: JSON
  // numbers, which the Node SDK's authenticateUser refuses to build, so it is signed here by hand.
  const signin = (raw: RawPusher, socketId: string, userData: string) =>
    raw.send({ event: 'pusher:signin', data: { auth: `${APP.key}:${createHmac('sha256', APP.secret).update(`${socketId}::user::${userData}`).digest('hex')}`, user_data: userData } });
  const open = async () => {
    const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
    return { raw, sid: JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string };
  };
  const ann = await open();
  signin(ann.raw, ann.sid, '{"id":9042,"name":"Ann","watchlist":[9043]}');
  await ann.raw.event('pusher:signin_success');
  const first = await ann.raw.event('pusher_internal:watchlist_events');
  t.same(JSON.parse(first.data), { events: [{ name: 'offline', user_ids: ['9043'] }] }, 'the watchlist of integer ids is watched');

  const bob = await open();
  signin(bob.raw, bob.sid, '{"id":9043}');
  await bob.raw.event('pusher:signin_success');
  const online = await ann.raw.event('pusher_internal:watchlist_events');
  t.same(JSON.parse(online.data), { events: [{ name: 'online', user_ids: ['9043'] }] }, 'user 9043 signing in is seen online');

  t.equal((await backend.sendToUser('9042', 'notice', { n: 1 })).status, 200);
  const got = await ann.raw.event('notice');
  t.same([got.channel, JSON.parse(got.data)], ['#server-to-user-9042', { n: 1 }], "sendToUser('9042') reaches the user signed in as 9042");

  t.equal((await backend.terminateUserConnections('9042')).status, 200);
  t.equal((await ann.raw.waitClose()).code, 4009, "terminate_connections('9042') closes it");
  t.equal(bob.raw.closed, undefined, 'the other user stays connected');

});

t.test('64-bit integer user ids (Laravel bigint keys) keep their digits: presence members and sign-in', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const open = async () => {
    const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
    return { raw, sid: JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string };
  };
  // channel_data as PHP's json_encode writes it; JSON.parse rounds both ids to 12345678901234567000.
  const join = (c: { raw: RawPusher; sid: string }, channelData: string) =>
    c.raw.send({ event: 'pusher:subscribe', data: { channel: 'presence-big-ids', auth: `${APP.key}:${createHmac('sha256', APP.secret).update(`${c.sid}:presence-big-ids:${channelData}`).digest('hex')}`, channel_data: channelData } });
  const ann = await open();
  join(ann, '{"user_id":12345678901234567891,"user_info":{"name":"Ann"}}');
  await ann.raw.event('pusher_internal:subscription_succeeded');
  const bob = await open();
  join(bob, '{"user_info":{"name":"Bob","user_id":1},"user_id":12345678901234567892}');
  const seen = JSON.parse((await bob.raw.event('pusher_internal:subscription_succeeded')).data).presence;
  t.same([seen.count, [...seen.ids].sort()], [2, ['12345678901234567891', '12345678901234567892']], 'two users, two members, with their own ids');
  t.same(JSON.parse((await ann.raw.event('pusher_internal:member_added')).data), { user_id: '12345678901234567892', user_info: { name: 'Bob', user_id: 1 } }, 'Ann sees Bob join');
  const users = await backend.get({ path: '/channels/presence-big-ids/users' }).then((r) => r.json());
  t.same(users.users.map((u: any) => u.id).sort(), ['12345678901234567891', '12345678901234567892'], 'the users API lists both');

  const sig = await open();
  const userData = '{"id":12345678901234567893}';
  sig.raw.send({ event: 'pusher:signin', data: { auth: `${APP.key}:${createHmac('sha256', APP.secret).update(`${sig.sid}::user::${userData}`).digest('hex')}`, user_data: userData } });
  await sig.raw.event('pusher:signin_success');
  await backend.sendToUser('12345678901234567893', 'notice', 1);
  t.equal((await sig.raw.event('notice')).channel, '#server-to-user-12345678901234567893', 'sendToUser with the exact id reaches the signed-in user');
});
