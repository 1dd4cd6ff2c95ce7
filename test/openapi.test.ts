// GET /api/openapi.json describes the API, and every endpoint's real answers — successes and errors —
// validate against it (ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses).
import t from 'tap';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { api, API_KEY, JWT_SECRET, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { until } from './helpers/redis.js';
import { PUSHER_OPTIONS } from './helpers/open-as.js';
import { SignJWT } from 'jose';

type Doc = { openapi: string; paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>> };

async function token(sub: string, info?: unknown): Promise<string> {
  return new SignJWT({ sub, channels: ['presence-*'], ...(info ? { user_info: info } : {}) })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(JWT_SECRET));
}

t.test('real answers of every endpoint validate against /api/openapi.json', async (t) => {
  const s = await startServer(t, { maxPayload: 4096, dashboard: true, dashboardToken: 'dash-token' });
  const docRes = await fetch(s.http + '/api/openapi.json');
  t.equal(docRes.status, 200, 'served without a key');
  t.equal(docRes.headers.get('content-type'), 'application/json');
  const doc = (await docRes.json()) as Doc;
  t.equal(doc.openapi, '3.1.0');

  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addSchema(doc, 'openapi');
  const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
  const covered = new Set<string>();

  /** Checks status and body of a real answer against the documented response of `path`/`method`. */
  const check = (name: string, path: string, method: string, r: { status: number; body: unknown }) => {
    const op = doc.paths[path]?.[method];
    t.ok(op, `${name}: ${method.toUpperCase()} ${path} is documented`);
    const resp = op?.responses[String(r.status)];
    t.ok(resp, `${name}: status ${r.status} is documented for ${method.toUpperCase()} ${path}`);
    if (!resp) return;
    covered.add(`${method} ${path} ${r.status}`);
    if (!resp.content?.['application/json']) return;
    const validate = ajv.getSchema(`openapi#/${pointer('paths', path, method, 'responses', String(r.status), 'content', 'application/json', 'schema')}`)!;
    const ok = validate(r.body);
    t.ok(ok, `${name}: body matches the schema${ok ? '' : ': ' + ajv.errorsText(validate.errors) + ' in ' + JSON.stringify(r.body).slice(0, 300)}`);
  };

  // Traffic: a user on a presence channel, a subscriber on a public one.
  const ann = await TestClient.connect(`${s.url}/ws?token=${await token('ann', { name: 'Ann' })}`);
  t.teardown(() => ann.ws.close());
  t.equal((await ann.request({ op: 'subscribe', channel: 'presence-room' })).ok, true);
  t.equal((await ann.request({ op: 'subscribe', channel: 'orders' })).ok, true);

  // Successes.
  check('publish', '/api/publish', 'post', await api(s.http, '/api/publish', { channel: 'orders', event: 'e', data: { n: 1 } }));
  check('publish to channels', '/api/publish', 'post', await api(s.http, '/api/publish', { channels: ['orders', 'other'], event: 'e', data: null }));
  check('publish to a user', '/api/publish', 'post', await api(s.http, '/api/publish', { user: 'ann', event: 'dm', data: 'hi' }));
  check('publish with the dashboard token', '/api/publish', 'post', await api(s.http, '/api/publish', { channel: 'orders', event: 'e', data: 2 }, { key: 'dash-token' }));
  check('batch', '/api/batch', 'post', await api(s.http, '/api/batch', { messages: [{ channel: 'orders', event: 'a', data: 1 }, { user: 'ann', event: 'b', data: 2 }] }));
  check('channels', '/api/channels', 'get', await api(s.http, '/api/channels'));
  check('channels by prefix', '/api/channels', 'get', await api(s.http, '/api/channels?prefix=pres'));
  check('one channel', '/api/channels/{name}', 'get', await api(s.http, '/api/channels/presence-room'));
  check('unknown channel', '/api/channels/{name}', 'get', await api(s.http, '/api/channels/nobody'));
  const users = await api(s.http, '/api/channels/presence-room/users');
  check('users', '/api/channels/{name}/users', 'get', users);
  t.same(users.body, { users: [{ user_id: 'ann', user_info: { name: 'Ann' } }] }, 'members carry user_id as in the protocol');
  await until('stats show the connection', async () => (await api(s.http, '/api/stats')).body.connections?.total === 1);
  check('stats', '/api/stats', 'get', await api(s.http, '/api/stats'));
  check('stats with the dashboard token', '/api/stats', 'get', await api(s.http, '/api/stats', undefined, { key: 'dash-token' }));
  check('health', '/health', 'get', await api(s.http, '/health', undefined, { key: null }));
  check('openapi', '/api/openapi.json', 'get', { status: 200, body: doc });
  const metrics = await fetch(s.http + '/metrics');
  check('metrics', '/metrics', 'get', { status: metrics.status, body: await metrics.text() });
  const tapCtrl = new AbortController();
  const tap = await fetch(s.http + '/api/tap?channel=orders', { headers: { authorization: `Bearer ${API_KEY}` }, signal: tapCtrl.signal });
  check('tap', '/api/tap', 'get', { status: tap.status, body: null });
  t.equal(tap.headers.get('content-type'), 'application/x-ndjson; charset=utf-8');
  await until('the tap subscribed', async () => (await api(s.http, '/api/channels/orders')).body.subscribers === 2);
  tapCtrl.abort();
  await until('an aborted tap leaves the channel', async () => (await api(s.http, '/api/channels/orders')).body.subscribers === 1);
  const kicked = await api(s.http, '/api/users/ann/disconnect', {});
  check('disconnect', '/api/users/{id}/disconnect', 'post', kicked);
  t.equal((await ann.waitClose()).code, 4011, 'the user is disconnected');

  // Errors.
  const errors: [string, string, string, Promise<{ status: number; body: unknown }>, number][] = [
    ['no key', '/api/publish', 'post', api(s.http, '/api/publish', { channel: 'a', event: 'e', data: 1 }, { key: null }), 401],
    ['wrong key', '/api/channels', 'get', api(s.http, '/api/channels', undefined, { key: 'nope' }), 401],
    ['dashboard token cannot batch', '/api/batch', 'post', api(s.http, '/api/batch', { messages: [{ channel: 'a', event: 'e', data: 1 }] }, { key: 'dash-token' }), 401],
    ['dashboard token cannot disconnect', '/api/users/{id}/disconnect', 'post', api(s.http, '/api/users/x/disconnect', {}, { key: 'dash-token' }), 401],
    ['bad JSON', '/api/publish', 'post', api(s.http, '/api/publish', undefined, { raw: '{"channel": ' }), 400],
    ['missing data', '/api/publish', 'post', api(s.http, '/api/publish', { channel: 'a', event: 'e' }), 400],
    ['bad channel', '/api/publish', 'post', api(s.http, '/api/publish', { channel: 'has space', event: 'e', data: 1 }), 400],
    ['oversized', '/api/publish', 'post', api(s.http, '/api/publish', { channel: 'a', event: 'e', data: 'x'.repeat(10_000) }), 413],
    ['batch shape', '/api/batch', 'post', api(s.http, '/api/batch', { messages: {} }), 400],
    ['batch item', '/api/batch', 'post', api(s.http, '/api/batch', { messages: [{ channel: 'a' }] }), 400],
    ['bad channel name', '/api/channels/{name}', 'get', api(s.http, '/api/channels/' + encodeURIComponent('a b')), 400],
    ['users of a public channel', '/api/channels/{name}/users', 'get', api(s.http, '/api/channels/orders/users'), 400],
    ['stats without key', '/api/stats', 'get', api(s.http, '/api/stats', undefined, { key: null }), 401],
    ['tap without channel', '/api/tap', 'get', api(s.http, '/api/tap'), 400],
    ['tap with a bad channel name', '/api/tap', 'get', api(s.http, '/api/tap?channel=' + encodeURIComponent('a b\u0000')), 400],
    ['tap with an oversized name', '/api/tap', 'get', api(s.http, '/api/tap?channel=' + 'x'.repeat(300)), 400],
    ['tap without key', '/api/tap', 'get', api(s.http, '/api/tap?channel=a', undefined, { key: null }), 401],
  ];
  for (const [name, path, method, p, status] of errors) {
    const r = await p;
    t.equal(r.status, status, `${name}: status ${status}`);
    check(name, path, method, r);
  }
  // A foreign browser origin: 403 in the documented error shape.
  const foreign = await fetch(s.http + '/api/channels', { headers: { authorization: `Bearer ${API_KEY}`, origin: 'https://evil.example' } });
  check('foreign origin', '/api/channels', 'get', { status: foreign.status, body: await foreign.json() });

  // HEAD, for every GET that has it: a documented status, no body.
  for (const [path, ops] of Object.entries(doc.paths)) {
    if (!ops['head']) continue;
    const real = path.replace('{name}', 'presence-room');
    const r = await fetch(s.http + real, { method: 'HEAD', headers: { authorization: `Bearer ${API_KEY}` } });
    t.equal((await r.arrayBuffer()).byteLength, 0, `HEAD ${real}: no body`);
    check(`HEAD ${real}`, path, 'head', { status: r.status, body: undefined });
  }

  // Every documented operation was exercised at least once.
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const method of Object.keys(ops)) t.ok([...covered].some((c) => c.startsWith(`${method} ${path} `)), `${method.toUpperCase()} ${path} was exercised`);
  }
});

t.test('every known path asked with a method it does not answer is 405 with Allow, not 404', async (t) => {
  const s = await startServer(t, { dashboard: true, dashboardToken: 'dash-token', ...PUSHER_OPTIONS });
  const doc = (await (await fetch(s.http + '/api/openapi.json')).json()) as Doc;
  const ask = async (method: string, path: string) => {
    const r = await fetch(s.http + path, { method, headers: { authorization: `Bearer ${API_KEY}` } });
    return { status: r.status, allow: r.headers.get('allow'), body: method === 'HEAD' ? undefined : ((await r.json()) as { error: { code: string } }) };
  };
  // The cases first seen: a GET-only route asked with POST or DELETE said "no API route"; PUT /sse,
  // POST /ws, GET /apps/<id>/events and HEAD /sse said "no route" (404).
  t.match(await ask('POST', '/api/tap'), { status: 405, allow: 'GET, OPTIONS', body: { error: { code: 'method_not_allowed' } } });
  t.match(await ask('DELETE', '/api/stats'), { status: 405, allow: 'GET, HEAD, OPTIONS', body: { error: { code: 'method_not_allowed' } } });
  t.match(await ask('POST', '/health'), { status: 405, allow: 'GET, HEAD' });
  t.match(await ask('PUT', '/sse'), { status: 405, allow: 'GET, POST, DELETE, OPTIONS', body: { error: { code: 'method_not_allowed' } } });
  t.match(await ask('HEAD', '/sse'), { status: 405, allow: 'GET, POST, DELETE, OPTIONS' });
  // A plain GET of the Pusher socket is told to upgrade, as GET /ws is.
  t.match(await ask('GET', `/app/${PUSHER_OPTIONS.pusherKey}`), { status: 426, body: { error: { code: 'upgrade_required' } } });
  // Every route, with every method it does not answer. The document's routes, each /api/ one also
  // answering the CORS preflight (OPTIONS /api/*), then the transports'.
  const routes: [string, string][] = Object.entries(doc.paths).map(([template, ops]) => [
    template.replace(/\{[^}]+\}/g, 'x'),
    [...Object.keys(ops).map((m) => m.toUpperCase()), ...(template.startsWith('/api/') ? ['OPTIONS'] : [])].join(', '),
  ]);
  routes.push(
    ['/ws', 'GET, HEAD'],
    ['/sse', 'GET, POST, DELETE, OPTIONS'],
    ['/poll', 'GET, POST, DELETE, OPTIONS'],
    ['/client.js', 'GET, HEAD'],
    ['/dashboard', 'GET, HEAD'],
    ['/dashboard/', 'GET, HEAD'],
    [`/app/${PUSHER_OPTIONS.pusherKey}`, 'GET'],
    [`/apps/${PUSHER_OPTIONS.pusherAppId}/events`, 'POST'],
    [`/apps/${PUSHER_OPTIONS.pusherAppId}/batch_events`, 'POST'],
    [`/apps/${PUSHER_OPTIONS.pusherAppId}/channels`, 'GET, HEAD'],
    [`/apps/${PUSHER_OPTIONS.pusherAppId}/channels/x`, 'GET, HEAD'],
    [`/apps/${PUSHER_OPTIONS.pusherAppId}/channels/presence-x/users`, 'GET, HEAD'],
    [`/apps/${PUSHER_OPTIONS.pusherAppId}/users/u/terminate_connections`, 'POST'],
  );
  for (const [path, allow] of routes) {
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      if (allow.split(', ').includes(method)) continue;
      const r = await ask(method, path);
      t.match(r, { status: 405, allow, ...(method === 'HEAD' ? {} : { body: { error: { code: 'method_not_allowed' } } }) }, `${method} ${path}: 405, Allow: ${allow}`);
    }
  }
  // Socket.IO's path answers any method itself, as Engine.IO defines (400 "Bad handshake method").
  t.match(await ask('PUT', '/socket.io/'), { status: 400, allow: null });
  // A path that is no route at all is still 404.
  t.match(await ask('POST', '/api/nope'), { status: 404, allow: null, body: { error: { code: 'not_found' } } });
  t.match(await ask('PUT', '/apps/1/nope'), { status: 404, allow: null, body: { error: { code: 'not_found' } } });
  t.match(await ask('POST', '/nope'), { status: 404, allow: null, body: { error: { code: 'not_found' } } });
  t.match(await ask('HEAD', '/nope'), { status: 404, allow: null });
});
