import t from 'tap';
import { startServer, api, API_KEY } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { APP_B, connected, pusherClient, pusherOptions, subscribed } from './helpers/pusher.js';

t.test('HTTP API success paths', async (t) => {
  const s = await startServer(t);
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  await c.request({ op: 'subscribe', channel: 'orders' });
  await c.request({ op: 'subscribe', channel: 'alerts' });
  const one = await api(s.http, '/api/publish', { channel: 'orders', event: 'created', data: { id: 1 } });
  t.equal(one.status, 200);
  t.equal(one.body.ok, true);
  t.same(one.body, { ok: true, count: 1, offsets: { orders: 1 } });
  const many = await api(s.http, '/api/publish', { channels: ['orders', 'alerts'], event: 'both', data: 'x' });
  t.same(many.body, { ok: true, count: 1, offsets: { orders: 2, alerts: 1 } });
  const batch = await api(s.http, '/api/batch', { messages: [{ channel: 'alerts', event: 'b1', data: 1 }, { channel: 'alerts', event: 'b2', data: 2 }] });
  t.same(batch.body, { ok: true, count: 2, offsets: { alerts: 3 } }, 'batch answers like publish: count, and each channel\'s last offset');
  // The answer is written out by hand (publishAnswer): a name that JSON must escape still comes back whole.
  const odd = 'q"uo\\te{}:';
  const quoted = await api(s.http, '/api/publish', { channel: odd, event: 'e', data: 1 });
  t.equal(quoted.status, 200);
  t.same(quoted.body, { ok: true, count: 1, offsets: { [odd]: 1 } }, 'a channel name with a quote and a backslash, escaped in the answer');
  const got = await c.waitForMessages('alerts', 3);
  t.same(got.map((f) => f.event), ['both', 'b1', 'b2']);
  // socket_id excludes that connection
  await api(s.http, '/api/publish', { channel: 'orders', event: 'quiet', data: null, socket_id: c.welcome.socket_id });
  await api(s.http, '/api/publish', { channel: 'orders', event: 'loud', data: null });
  await c.next((f) => f.event === 'loud');
  t.equal(c.messages('orders').filter((f) => f.event === 'quiet').length, 0, 'excluded socket skipped');
  const list = await api(s.http, '/api/channels');
  t.same(list.body.channels.map((x: any) => x.name), ['alerts', 'orders']);
  t.equal(list.body.channels[0].subscribers, 1);
  const prefixed = await api(s.http, '/api/channels?prefix=ord');
  t.same(prefixed.body.channels.map((x: any) => x.name), ['orders']);
  const info = await api(s.http, '/api/channels/orders');
  t.match(info.body, { name: 'orders', subscribers: 1, offset: 4, owner: { shard: Number, placement: 'local' } });
  const none = await api(s.http, '/api/channels/nobody-here');
  t.equal(none.body.subscribers, 0);
  // Gauges are published by each shard every 250 ms: wait for the connection to show.
  let health = await api(s.http, '/health', undefined, { key: null });
  for (let i = 0; i < 20 && health.body.connections !== 1; i++) {
    await new Promise((r) => setTimeout(r, 100));
    health = await api(s.http, '/health', undefined, { key: null });
  }
  t.equal(health.status, 200);
  t.equal(health.body.status, 'ok');
  t.same(health.body.workers, { total: 2, alive: 2, stuck: 0 });
  t.equal(health.body.connections, 1);
  const metrics = await fetch(s.http + '/metrics').then((r) => r.text());
  const subs = [...metrics.matchAll(/^rt_subscriptions\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  t.equal(subs, 2, 'rt_subscriptions counts the two subscriptions');
  t.match(metrics, /^rt_connections\{thread="\d",transport="websocket",protocol="native"\} 1$/m);
  t.match(metrics, /rt_deliveries_total/);
});

t.test('HTTP API error paths answer 4xx JSON errors', async (t) => {
  const s = await startServer(t, { maxPayload: 4096 });
  const cases: Array<[string, Promise<{ status: number; body: any }>, number, string]> = [
    ['no key', api(s.http, '/api/publish', { channel: 'a', event: 'e', data: 1 }, { key: null }), 401, 'unauthorized'],
    ['wrong key', api(s.http, '/api/publish', { channel: 'a', event: 'e', data: 1 }, { key: 'nope' }), 401, 'unauthorized'],
    ['wrong key on GET', api(s.http, '/api/channels', undefined, { key: API_KEY + 'x' }), 401, 'unauthorized'],
    ['bad JSON', api(s.http, '/api/publish', undefined, { raw: '{"channel": ' }), 400, 'bad_json'],
    ['empty body', api(s.http, '/api/publish', undefined, { raw: '' }), 400, 'bad_json'],
    ['not an object', api(s.http, '/api/publish', [1, 2]), 400, 'bad_request'],
    ['missing event', api(s.http, '/api/publish', { channel: 'a', data: 1 }), 400, 'bad_request'],
    ['missing data', api(s.http, '/api/publish', { channel: 'a', event: 'e' }), 400, 'bad_request'],
    ['missing target', api(s.http, '/api/publish', { event: 'e', data: 1 }), 400, 'bad_request'],
    ['two targets', api(s.http, '/api/publish', { channel: 'a', user: '1', event: 'e', data: 1 }), 400, 'bad_request'],
    ['bad channel name', api(s.http, '/api/publish', { channel: 'has space', event: 'e', data: 1 }), 400, 'invalid_channel'],
    ['channels not array', api(s.http, '/api/publish', { channels: 'a', event: 'e', data: 1 }), 400, 'bad_request'],
    ['empty channels', api(s.http, '/api/publish', { channels: [], event: 'e', data: 1 }), 400, 'bad_request'],
    ['event not string', api(s.http, '/api/publish', { channel: 'a', event: 5, data: 1 }), 400, 'bad_request'],
    ['oversized body', api(s.http, '/api/publish', { channel: 'a', event: 'e', data: 'x'.repeat(10000) }), 413, 'payload_too_large'],
    ['batch not array', api(s.http, '/api/batch', { messages: {} }), 400, 'bad_request'],
    ['batch bad item', api(s.http, '/api/batch', { messages: [{ channel: 'a', event: 'e', data: 1 }, { channel: 'a' }] }), 400, 'bad_request'],
    ['batch unknown field', api(s.http, '/api/batch', { messages: [{ channel: 'a', event: 'e', data: 1 }], socket_id: '0.x' }), 400, 'bad_request'],
    ['users of non-presence', api(s.http, '/api/channels/public/users'), 400, 'bad_request'],
    ['unknown route', api(s.http, '/api/nothing', {}), 404, 'not_found'],
    ['unknown top-level route', api(s.http, '/nope', undefined, { key: null }), 404, 'not_found'],
  ];
  for (const [name, p, status, code] of cases) {
    const r = await p;
    t.equal(r.status, status, `${name}: status`);
    t.equal(r.body?.error?.code, code, `${name}: code`);
    t.type(r.body?.error?.message, 'string', `${name}: message`);
  }
  // The key without "Bearer " (a common slip) is not "missing": the answer says what is wrong with it.
  const bare = await fetch(s.http + '/api/channels', { headers: { authorization: API_KEY } });
  t.equal(bare.status, 401);
  t.match((await bare.json()).error.message, /^the Authorization header is not "Bearer <api key>": send "Authorization: Bearer <api key>"/);
  t.match((await api(s.http, '/api/channels', undefined, { key: null })).body.error.message, /^missing API key: send/);
  const batchItem = await api(s.http, '/api/batch', { messages: [{ channel: 'a', event: 'e', data: 1 }, { channel: 'a' }] });
  t.match(batchItem.body.error.message, /messages\[1\]/, 'batch error names the bad item');
  t.match((await api(s.http, '/api/batch', { messages: [{ channel: 'a', event: 'e', data: 1 }], extra: 1 })).body.error.message, /unknown field "extra"; a batch has "messages" only/, 'a batch field that is not "messages" is named');
  const info = await api(s.http, '/api/channels/a');
  t.equal(info.body.offset, 0, 'a rejected batch published nothing');
  const health = await api(s.http, '/health', undefined, { key: null });
  t.equal(health.body.status, 'ok', 'shards alive after all of that');
});

t.test('a published payload reaches subscribers as JSON.stringify writes it, whatever the body looked like', async (t) => {
  const { default: WebSocket } = await import('ws');
  const s = await startServer(t);
  const raw: string[] = [];
  const ws = new WebSocket(s.url + '/ws');
  t.teardown(() => ws.terminate());
  await new Promise<void>((resolve) => {
    ws.on('message', (m) => {
      const text = m.toString();
      raw.push(text);
      if (text.includes('"welcome"')) ws.send(JSON.stringify({ op: 'subscribe', channel: 'layout', ref: 1 }));
      if (text.includes('"reply"')) resolve();
    });
  });
  const bodies = [
    // compact
    '{"channel":"layout","event":"a","data":{"n":1.5,"s":"x","l":[true,null]}}',
    // spaced out, a number written 1.50, an escape
    '{ "channel" : "layout", "event" : "b", "data" : { "n" : 1.50, "s" : "a\\u0041" } }',
    // the member twice: the last one, as JSON.parse keeps
    '{"channel":"layout","event":"c","data":1,"data":[2]}',
    // an escape elsewhere in the body
    '{"channel":"layout","event":"d\\u0021","data":{"k":-0}}',
  ];
  for (const body of bodies) t.equal((await api(s.http, '/api/publish', undefined, { raw: body })).status, 200, body);
  const deadline = Date.now() + 10_000;
  while (raw.filter((r) => r.includes('"op":"message"')).length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const messages = raw.filter((r) => r.includes('"op":"message"'));
  t.equal(messages.length, 4);
  t.ok(messages[0]!.includes('"data":{"n":1.5,"s":"x","l":[true,null]}'), messages[0]);
  t.ok(messages[1]!.includes('"data":{"n":1.5,"s":"aA"}'), messages[1]);
  t.ok(messages[2]!.includes('"data":[2]'), messages[2]);
  t.ok(messages[3]!.includes('"event":"d!"') && messages[3]!.includes('"data":{"k":0}'), messages[3]);
});

t.test('a channel listed twice is refused with 400 bad_request naming it, in publish and in each batch message; nothing is published', async (t) => {
  const s = await startServer(t);
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  await c.request({ op: 'subscribe', channel: 'twice' });
  // Published once per mention, a subscriber got the message twice at two offsets.
  const dup = await api(s.http, '/api/publish', { channels: ['twice', 'other', 'twice'], event: 'dup', data: 1 });
  t.equal(dup.status, 400);
  t.equal(dup.body?.error?.code, 'bad_request');
  t.match(dup.body?.error?.message, /"twice"/, 'the message names the channel');
  const batch = await api(s.http, '/api/batch', {
    messages: [
      { channel: 'twice', event: 'fine', data: 1 },
      { channels: ['twice', 'twice'], event: 'dup', data: 2 },
    ],
  });
  t.equal(batch.status, 400);
  t.equal(batch.body?.error?.code, 'bad_request');
  t.match(batch.body?.error?.message, /messages\[1\].*"twice"/, 'the batch error names the message and the channel');
  // A sentinel after the refusals: if either had published anything, it would arrive first.
  const ok = await api(s.http, '/api/publish', { channels: ['twice', 'other'], event: 'sentinel', data: 3 });
  t.same(ok.body, { ok: true, count: 1, offsets: { twice: 1, other: 1 } }, 'the refused requests took no offsets');
  const sentinel = await c.next((f) => f.op === 'message' && f.channel === 'twice' && f.event === 'sentinel');
  t.equal(sentinel.offset, 1);
  t.same(c.messages('twice'), [], 'the subscriber got nothing before the sentinel');
});

t.test('an unknown field in a publish is refused naming it (socketId for socket_id), in publish and batch; nothing is published', async (t) => {
  const s = await startServer(t);
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  await c.request({ op: 'subscribe', channel: 'fields' });
  // Dropped in silence, the misspelt exclusion delivered the message to the very connection it named.
  const typo = await api(s.http, '/api/publish', { channel: 'fields', event: 'mine', data: 1, socketId: c.welcome.socket_id });
  t.equal(typo.status, 400);
  t.same(typo.body.error, { code: 'bad_request', message: 'body: unknown field "socketId" (did you mean "socket_id"?); a message has channel, channels, user, event, data, socket_id' });
  const batch = await api(s.http, '/api/batch', { messages: [{ channel: 'fields', event: 'fine', data: 1 }, { chanel: 'fields', event: 'typo', data: 2 }] });
  t.equal(batch.status, 400);
  t.match(batch.body.error.message, /^messages\[1\]: unknown field "chanel" \(did you mean "channel"\?\)/);
  const ok = await api(s.http, '/api/publish', { channel: 'fields', event: 'sentinel', data: 3, socket_id: null });
  t.same(ok.body, { ok: true, count: 1, offsets: { fields: 1 } }, 'the refused requests took no offsets');
  const sentinel = await c.next((f) => f.op === 'message' && f.channel === 'fields' && f.event === 'sentinel');
  t.equal(sentinel.offset, 1);
  t.same(c.messages('fields'), [], 'the subscriber got nothing before the sentinel');
});

// GET /api/channels is the default app's, as the rest of /api/*: another Pusher app's channel of the same
// name lives in the hub under an internal, suffixed name, which the list used to show ("news @2002") though
// GET /api/channels/:name refuses that very name.
t.test('GET /api/channels lists the default app\'s channels, not another Pusher app\'s', async (t) => {
  const s = await startServer(t, pusherOptions({ pusherApps: [APP_B] }));
  const other = pusherClient(t, s.port, { app: APP_B });
  await connected(other);
  await subscribed(other, 'news');
  await subscribed(other, 'only-b');
  const mine = pusherClient(t, s.port);
  await connected(mine);
  await subscribed(mine, 'news');
  const nat = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => nat.close());
  await nat.request({ op: 'subscribe', channel: 'native-only' });

  const all = await api(s.http, '/api/channels');
  t.equal(all.status, 200);
  t.same(all.body.channels.map((c: { name: string }) => c.name), ['native-only', 'news'], 'the default app\'s channels only');
  t.match(all.body.channels[1], { name: 'news', subscribers: 1 }, 'news counts the default app\'s subscriber');
  const prefixed = await api(s.http, '/api/channels?prefix=news');
  t.same(prefixed.body.channels.map((c: { name: string }) => c.name), ['news'], 'a prefix does not reach the other app\'s news');
  // The other app's channels are still there, through its own API.
  const b = await api(s.http, '/api/channels?prefix=only');
  t.same(b.body.channels, [], 'only-b is app B\'s');
});

// A string too long was told it must be a string: the refusal names the bound it broke.
t.test('a socket_id or user id too long is refused naming the length limit, not the type', async (t) => {
  const s = await startServer(t);
  const cases: Array<[string, unknown, RegExp]> = [
    ['socket_id of 65', { channel: 'len', event: 'e', data: 1, socket_id: 'x'.repeat(65) }, /"socket_id" must be a string of at most 64 characters/],
    ['socket_id a number', { channel: 'len', event: 'e', data: 1, socket_id: 5 }, /"socket_id" must be a string of at most 64 characters/],
    ['user of 201', { user: 'u'.repeat(201), event: 'e', data: 1 }, /"user" must be a string or number of 1-200 characters/],
    ['user empty', { user: '', event: 'e', data: 1 }, /"user" must be a string or number of 1-200 characters/],
  ];
  for (const [what, body, message] of cases) {
    const r = await api(s.http, '/api/publish', body);
    t.equal(r.status, 400, what);
    t.match(r.body, { error: { code: 'bad_request', message } }, `${what}: the message names the limit`);
  }
  t.equal((await api(s.http, '/api/publish', { channel: 'len', event: 'e', data: 1, socket_id: 'x'.repeat(64) })).status, 200, 'a socket_id of 64 passes');
  t.equal((await api(s.http, '/api/publish', { user: 'u'.repeat(200), event: 'e', data: 1 })).status, 200, 'a user id of 200 passes');
  // A 64-bit integer id (a Laravel bigint key) is rounded by JSON parsing into another user's id:
  // refused, in publish and in each batch message, rather than delivered to that other user.
  for (const [path, raw] of [
    ['/api/publish', '{"user":12345678901234567891,"event":"e","data":1}'],
    ['/api/batch', '{"messages":[{"user":"7","event":"e","data":1},{"user":12345678901234567891,"event":"e","data":1}]}'],
    ['/api/publish', '{"user":1.5e300,"event":"e","data":1}'],
  ] as const) {
    const r = await api(s.http, path, undefined, { raw });
    t.equal(r.status, 400, `${path} ${raw.slice(0, 40)}`);
    t.match(r.body, { error: { code: 'bad_request', message: /"user" .* send it as a string/ } });
  }
  t.equal((await api(s.http, '/api/publish', undefined, { raw: '{"user":9007199254740991,"event":"e","data":1}' })).status, 200, 'an integer up to 2^53 - 1 passes');
});
