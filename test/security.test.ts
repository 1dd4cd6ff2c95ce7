import t from 'tap';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import WebSocket from 'ws';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { selfSignedCert } from './helpers/tls.js';
import { dropNamespace, machineRedis } from './helpers/redis.js';

const token = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { secret: JWT_SECRET });

/** Status of a refused upgrade, or 101 when it was accepted. */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, rejectUnauthorized: false });
    ws.once('open', () => (ws.close(), resolve({ status: 101, body: '' })));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', (e) => (e.message.includes('Unexpected server response') ? undefined : reject(e)));
  });
}

t.test('origins: WebSocket upgrades and CORS follow the allow-list', async (t) => {
  const s = await startServer(t, { allowedOrigins: 'https://app.example.com,https://*.trusted.io' });
  t.equal((await upgradeStatus(s.url + '/ws', { origin: 'https://evil.example' })).status, 403, 'foreign origin refused');
  const refused = await upgradeStatus(s.url + '/ws', { origin: 'https://evil.example' });
  t.equal(JSON.parse(refused.body).error.code, 'origin_not_allowed');
  t.equal((await upgradeStatus(s.url + '/ws', { origin: 'https://app.example.com' })).status, 101, 'listed origin');
  t.equal((await upgradeStatus(s.url + '/ws', { origin: 'https://a.b.trusted.io' })).status, 101, 'wildcard origin');
  t.equal((await upgradeStatus(s.url + '/ws', { origin: 'https://trusted.io.evil.example' })).status, 403, 'suffix trick refused');
  t.equal((await upgradeStatus(s.url + '/ws', { origin: `http://127.0.0.1:${s.port}` })).status, 101, 'same host');
  t.equal((await upgradeStatus(s.url + '/ws')).status, 101, 'no Origin (not a browser)');
  const pre = await fetch(s.http + '/api/publish', { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } });
  t.equal(pre.status, 204);
  t.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example.com');
  t.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/);
  const bad = await fetch(s.http + '/api/publish', { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
  t.equal(bad.status, 403);
  const cross = await fetch(s.http + '/api/channels', { headers: { origin: 'https://evil.example', authorization: 'Bearer test-api-key' } });
  t.equal(cross.status, 403, 'API refuses a foreign browser origin');
  const ok = await fetch(s.http + '/api/channels', { headers: { origin: 'https://app.example.com', authorization: 'Bearer test-api-key' } });
  t.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example.com');
});

t.test('an --allowed-origins entry no browser Origin can match stops the start, saying what to write', async (t) => {
  const cases: [string, RegExp][] = [
    ['app.example.com', /allowedOrigins \(createServer option\): "app\.example\.com" has no scheme: browsers send one in Origin, write https:\/\/app\.example\.com/],
    ['*.example.com', /write https:\/\/\*\.example\.com/],
    ['https://app.example.com:443', /browsers leave the default port out of Origin, write https:\/\/app\.example\.com$/],
    ['https://app.example.com/login', /is not an origin: expected scheme:\/\/host\[:port\], without a path/],
  ];
  for (const [entry, message] of cases) {
    await t.rejects(startServer(t, { allowedOrigins: `https://ok.example,${entry}` }), { code: 'config_invalid', key: 'allowedOrigins', message }, entry);
  }
  await t.rejects(startServer(t, { pusherApps: [{ id: '1', key: 'k', secret: 'secret-123', allowedOrigins: ['admin.example.com'] }] }), { message: /pusherApps\[0\]\.allowedOrigins: "admin\.example\.com" has no scheme/ });
  // What browsers can send is accepted: a trailing slash, a port that is not the default, a wildcard, '*'.
  const s = await startServer(t, { allowedOrigins: 'https://app.example.com/,http://localhost:3000,https://*.example.com,*', workers: 1 });
  t.equal((await upgradeStatus(s.url + '/ws', { origin: 'http://localhost:3000' })).status, 101);
});

t.test('TLS: wss:// and https:// on the same port; bad files are clear start-up errors', async (t) => {
  const { dir, key, cert } = selfSignedCert();
  const s = await startServer(t, { tlsCert: cert, tlsKey: key });
  const health = await new Promise<string>((resolve, reject) => {
    httpsGet({ host: '127.0.0.1', port: s.port, path: '/health', rejectUnauthorized: false }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
  t.equal(JSON.parse(health).status, 'ok', 'https works');
  const ws = new WebSocket(`wss://127.0.0.1:${s.port}/ws`, { rejectUnauthorized: false });
  const welcome = await new Promise<any>((resolve, reject) => {
    ws.once('message', (m) => resolve(JSON.parse(m.toString())));
    ws.once('error', reject);
  });
  t.equal(welcome.op, 'welcome', 'wss works');
  ws.close();
  writeFileSync(join(dir, 'garbage.pem'), 'not a pem');
  await t.rejects(startServer(t, { tlsCert: join(dir, 'missing.pem'), tlsKey: key }), /cannot read tlsCert \(createServer option\) file/);
  await t.rejects(startServer(t, { tlsCert: join(dir, 'garbage.pem'), tlsKey: key }), /tlsCert \(createServer option\) file .*garbage\.pem is not a PEM file/);
  await t.rejects(startServer(t, { tlsCert: cert }), /TLS needs both tlsCert \(createServer option\) and --tls-key: tlsCert \(createServer option\) is set alone/);
  await t.rejects(startServer(t, { tlsCert: key, tlsKey: cert }), /rejected/);
  // A key that is not the certificate's: OpenSSL's message names neither file, ours names both.
  const other = join(dir, 'other-key.pem');
  execFileSync('openssl', ['genrsa', '-out', other, '2048'], { stdio: 'ignore' });
  await t.rejects(startServer(t, { tlsCert: cert, tlsKey: other }), new RegExp(`TLS certificate ${cert}.* and key ${other} rejected: .*mismatch.*not the certificate's`));
});

t.test('rate limits and caps refuse explicitly', async (t) => {
  const s = await startServer(t, { rateLimit: 20, rateBurst: 10, maxConnectionsPerIp: 4, maxWhisperSize: 512, apiRateLimit: 40 });
  const c = await TestClient.connect(s.url + '/ws');
  for (let i = 0; i < 30; i++) c.send({ op: 'ping', ref: 1000 + i });
  await new Promise((r) => setTimeout(r, 300));
  const limited = c.frames.filter((f) => f.error?.code === 'rate_limited');
  t.ok(limited.length >= 15, `burst beyond the bucket was refused (${limited.length} rate_limited)`);
  t.ok(c.frames.filter((f) => f.pong).length >= 10, 'the burst allowance went through');
  // sustained abuse is disconnected with a reason
  for (let i = 0; i < 120; i++) c.send({ op: 'ping' });
  const closed = await c.waitClose();
  t.equal(closed.code, 4029);
  t.match(closed.reason, /rate limit/);
  // whisper size
  const w = await TestClient.connect(s.url + '/ws?token=' + token('1', { channels: ['private-*'] }));
  await w.request({ op: 'subscribe', channel: 'private-x' });
  const big = await w.request({ op: 'publish', channel: 'private-x', event: 'e', data: 'x'.repeat(1000) });
  t.equal(big.error.code, 'payload_too_large');
  t.equal((await w.request({ op: 'publish', channel: 'private-x', event: 'e', data: 'small' })).ok, true);
  // connections per IP (the first client closed; w is one)
  const more = [await TestClient.connect(s.url + '/ws'), await TestClient.connect(s.url + '/ws'), await TestClient.connect(s.url + '/ws')];
  const over = await upgradeStatus(s.url + '/ws');
  t.equal(over.status, 429);
  t.equal(JSON.parse(over.body).error.code, 'too_many_connections_from_ip');
  more[0]!.close();
  await more[0]!.waitClose();
  await new Promise((r) => setTimeout(r, 50));
  t.equal((await upgradeStatus(s.url + '/ws')).status, 101, 'a slot frees when a connection closes');
  more.slice(1).forEach((m) => m.close());
  w.close();
  // API rate limit per key
  const statuses = await Promise.all(Array.from({ length: 60 }, () => api(s.http, '/api/channels').then((r) => r.status)));
  t.ok(statuses.includes(429), 'API requests over the limit get 429');
  t.ok(statuses.filter((x) => x === 200).length >= 30, 'requests within the limit succeed');
});

t.test('host-wide connection cap and per-IP connection rate', async (t) => {
  const s = await startServer(t, { maxConnections: 2 });
  const a = await TestClient.connect(s.url + '/ws');
  const b = await TestClient.connect(s.url + '/ws');
  const third = await upgradeStatus(s.url + '/ws');
  t.equal(third.status, 503);
  t.equal(JSON.parse(third.body).error.code, 'too_many_connections');
  a.close();
  b.close();
  const r = await startServer(t, { connectionRatePerIp: 5 });
  // The limit counts in one-second windows: 16 attempts at once fall into at most two of them (unless
  // the machine takes over a second to answer 16 upgrades), so one window sees 8 or more.
  const results = await Promise.all(Array.from({ length: 16 }, () => upgradeStatus(r.url + '/ws').then((u) => u.status)));
  t.ok(results.includes(429), `connections beyond 5/s refused: ${results}`);
  t.ok(results.filter((x) => x === 101).length >= 5, 'the first 5 of a second are admitted');
});

t.test('requireAuth and token revocation', async (t) => {
  const s = await startServer(t, { requireAuth: true });
  const anon = await upgradeStatus(s.url + '/ws');
  t.equal(anon.status, 401);
  t.equal(JSON.parse(anon.body).error.code, 'unauthorized');
  const old = token('77');
  const c = await TestClient.connect(s.url + '/ws?token=' + old);
  t.equal(c.welcome.user, '77');
  t.equal((await api(s.http, '/api/users/77/disconnect', {})).status, 200);
  t.equal((await c.waitClose()).code, 4011);
  const again = await upgradeStatus(s.url + '/ws?token=' + old);
  t.equal(again.status, 401, 'a token issued before the revocation is refused');
  t.equal(JSON.parse(again.body).error.code, 'token_revoked');
  await new Promise((r) => setTimeout(r, 1100));
  t.equal((await upgradeStatus(s.url + '/ws?token=' + token('77'))).status, 101, 'a newer token works');
});

t.test('presence channels hold at most --max-presence-members users', async (t) => {
  const s = await startServer(t, { maxPresenceMembers: 2 });
  const tok = (u: string) => token(u, { channels: ['presence-*'] });
  const a = await TestClient.connect(s.url + '/ws?token=' + tok('a'));
  const a2 = await TestClient.connect(s.url + '/ws?token=' + tok('a'));
  const b = await TestClient.connect(s.url + '/ws?token=' + tok('b'));
  const c = await TestClient.connect(s.url + '/ws?token=' + tok('c'));
  t.teardown(() => [a, a2, b, c].forEach((x) => x.close()));
  t.equal((await a.request({ op: 'subscribe', channel: 'presence-small' })).ok, true);
  t.equal((await b.request({ op: 'subscribe', channel: 'presence-small' })).ok, true);
  t.equal((await a2.request({ op: 'subscribe', channel: 'presence-small' })).ok, true, 'another tab of a member is not a new member');
  const full = await c.request({ op: 'subscribe', channel: 'presence-small' });
  t.equal(full.error.code, 'too_many_members');
  b.close();
  await a.next((f) => f.op === 'leave');
  t.equal((await c.request({ op: 'subscribe', channel: 'presence-small' })).ok, true, 'a place frees when a member leaves');
});

// With --redis the subscribe takes another path (admitBridged), which once skipped the check: no limit at all.
t.test('with --redis, --max-presence-members still holds (per host)', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-maxmembers-${process.pid}-${Date.now()}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const s = await startServer(t, { maxPresenceMembers: 2, redis: redis.url, redisNamespace: ns });
  const tok = (u: string) => token(u, { channels: ['presence-*'] });
  const [a, a2, b, c] = await Promise.all(['a', 'a', 'b', 'c'].map((u) => TestClient.connect(s.url + '/ws?token=' + tok(u))));
  t.teardown(() => [a, a2, b, c].forEach((x) => x!.close()));
  t.equal((await a!.request({ op: 'subscribe', channel: 'presence-small' })).ok, true);
  t.equal((await b!.request({ op: 'subscribe', channel: 'presence-small' })).ok, true);
  t.equal((await a2!.request({ op: 'subscribe', channel: 'presence-small' })).ok, true, 'another tab of a member is not a new member');
  const full = await c!.request({ op: 'subscribe', channel: 'presence-small' });
  t.equal(full.error?.code, 'too_many_members', 'the third user is refused');
  t.same((await api(s.http, '/api/channels/presence-small/users')).body.users.map((u: { user_id: string }) => u.user_id).sort(), ['a', 'b'], 'and left nothing behind in Redis');
  b!.close();
  await a!.next((f) => f.op === 'leave');
  t.equal((await c!.request({ op: 'subscribe', channel: 'presence-small' })).ok, true, 'a place frees when a member leaves');
});
