// GET /ws without an upgrade answers with what the upgrade would have got (docs/protocol.md,
// Connecting): a WebSocket hides a refused upgrade's status, so clients ask here why.
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { signJwt } from 'rt-actors';
import { JWT_SECRET, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

const now = () => Math.floor(Date.now() / 1000);

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; statusText: string; body: any; headers: Headers }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, statusText: res.statusText, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

t.test('what the upgrade would have got: 426 when accepted, else its refusal, nothing admitted', async (t) => {
  const s = await startServer(t, { allowedOrigins: ['https://app.example.com'], maxConnectionsPerIp: 1 });
  const ok = await get(s.http + '/ws');
  t.equal(ok.status, 426, 'would have been accepted: 426 Upgrade Required');
  t.equal(ok.statusText, 'Upgrade Required', 'the status line says so too (it said "426 Status")');
  t.equal(ok.body.error.code, 'upgrade_required');
  t.equal(ok.headers.get('upgrade'), 'websocket');

  const good = signJwt({ sub: 'ada', exp: now() + 600 }, { secret: JWT_SECRET });
  t.equal((await get(`${s.http}/ws?token=${good}`)).status, 426, 'a good token: 426');
  t.equal((await get(s.http + '/ws', { headers: { authorization: `Bearer ${good}` } })).status, 426, 'a good bearer token: 426');

  const expired = await get(`${s.http}/ws?token=${signJwt({ sub: 'old', exp: now() - 600 }, { secret: JWT_SECRET })}`);
  t.equal(expired.status, 401);
  t.equal(expired.body.error.code, 'token_expired', 'an expired token: 401 token_expired');
  const junk = await get(`${s.http}/ws?token=not-a-jwt`);
  t.same([junk.status, junk.body.error.code], [401, 'token_malformed'], 'a malformed token');
  const badFormat = await get(`${s.http}/ws?format=xml`);
  t.same([badFormat.status, badFormat.body.error.code], [400, 'bad_request'], 'a format the server does not speak');

  const foreign = await get(s.http + '/ws', { headers: { origin: 'https://evil.example.net' } });
  t.same([foreign.status, foreign.body.error.code], [403, 'origin_not_allowed'], 'an origin not allowed: 403');
  t.equal(foreign.headers.get('access-control-allow-origin'), null, '… without CORS headers');
  const allowed = await get(s.http + '/ws', { headers: { origin: 'https://app.example.com' } });
  t.equal(allowed.status, 426);
  t.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example.com', 'an allowed page may read the answer');

  const head = await fetch(`${s.http}/ws?token=not-a-jwt`, { method: 'HEAD' });
  t.equal(head.status, 401, 'HEAD: the same status');
  t.equal(await head.text(), '', 'HEAD: no body');

  // --max-connections-per-ip 1: the probes above took no slot.
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  t.ok(c.welcome.socket_id, 'a WebSocket still connects');
  t.equal((await get(s.http + '/ws')).status, 426, 'a probe is not refused by the connection limit either');
});

t.test('a server that requires a token, and a public-key token checked off-thread', async (t) => {
  const mine = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = (k: typeof mine.privateKey) => k.export({ type: 'pkcs8', format: 'pem' }).toString();
  const s = await startServer(t, { jwtSecret: '', jwtPublicKey: mine.publicKey.export({ type: 'spki', format: 'pem' }).toString(), requireAuth: true });
  const none = await get(s.http + '/ws');
  t.same([none.status, none.body.error.code], [401, 'unauthorized'], 'no token: 401 unauthorized');
  const good = signJwt({ sub: 'ada', exp: now() + 600 }, { privateKey: pem(mine.privateKey), algorithm: 'ES256' });
  t.equal((await get(`${s.http}/ws?token=${good}`)).status, 426, 'a token signed with the key: 426');
  const forged = signJwt({ sub: 'eve', exp: now() + 600 }, { privateKey: pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey), algorithm: 'ES256' });
  const refused = await get(`${s.http}/ws?token=${forged}`);
  t.same([refused.status, refused.body.error.code], [401, 'token_bad_signature'], 'a forged one: 401 token_bad_signature, after the check');
});

t.test('probes count against --connection-rate-per-ip, as upgrades do', async (t) => {
  const s = await startServer(t, { connectionRatePerIp: 3 });
  // A fixed one-second window: 20 quick probes put at least four in one window, however they fall.
  let refused: { status: number; body: any } | undefined;
  for (let i = 0; i < 20 && !refused; i++) {
    const r = await get(`${s.http}/ws?token=not-a-jwt`);
    if (r.status === 429) refused = r;
    else t.equal(r.status, 401, 'within the rate: the token is checked');
  }
  t.equal(refused?.body.error.code, 'connection_rate_limited', 'past the rate: 429, the token not checked');
});
