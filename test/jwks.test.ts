// Tokens from an identity provider: keys from a JWKS URL (a local HTTP server started here), chosen
// by kid, rotated, re-fetched on an unknown kid at most once per --jwks-cooldown; aud and iss checked.
import t from 'tap';
import { createServer as createHttpServer } from 'node:http';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { startServer } from './helpers/server.js';
import { openAs } from './helpers/open-as.js';
import { fileURLToPath } from 'node:url';
import { cleanEnv, listeningPort, runCli } from './helpers/cli.js';
import { until } from './helpers/redis.js';

interface Key { kid: string; alg: 'RS256' | 'ES256'; privateKey: KeyObject; jwk: Record<string, unknown> }

function makeKey(kid: string, alg: 'RS256' | 'ES256'): Key {
  const pair = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, alg, privateKey: pair.privateKey, jwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

const ISSUER = 'https://idp.example.test/';
const AUDIENCE = 'rt-actors-test';

function token(key: Key, claims: Record<string, unknown> = {}, kid = key.kid): Promise<string> {
  return new SignJWT({ sub: 'u-1', aud: AUDIENCE, iss: ISSUER, ...claims })
    .setProtectedHeader({ alg: key.alg, kid })
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(key.privateKey);
}

t.test('JWKS: keys by kid, rotation, bounded refresh, aud and iss', async (t) => {
  const a = makeKey('key-a', 'RS256');
  const b = makeKey('key-b', 'ES256');
  let served: Key[] = [a];
  let fetches = 0;
  const idp = createHttpServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') return res.writeHead(404).end();
    fetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: served.map((k) => k.jwk) }));
  });
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  t.teardown(() => idp.close());
  const jwksUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}/.well-known/jwks.json`;
  const s = await startServer(t, { jwksUrl, jwtAudience: [AUDIENCE], jwtIssuer: [ISSUER], jwksCooldown: 1, requireAuth: true });

  const connect = async (tok: string) => {
    const o = await openAs(s.port, 'ws', { authorization: `Bearer ${tok}` });
    o.close();
    // RS256 is checked after the upgrade (keys may need fetching): a refusal is an error frame, then close 4001.
    return { status: o.closeCode ?? o.status, code: o.body?.error?.code as string | undefined, message: String(o.body?.error?.message ?? '') };
  };

  t.equal((await connect(await token(a))).status, 101, 'a token signed with the published key connects');
  t.ok(fetches >= 1, 'the key set was fetched');

  const wrongAud = await connect(await token(a, { aud: 'someone-else' }));
  t.same([wrongAud.status, wrongAud.code], [4001, 'token_wrong_audience']);
  t.match(wrongAud.message, /--jwt-audience/);
  const wrongIss = await connect(await token(a, { iss: 'https://evil.test/' }));
  t.same([wrongIss.status, wrongIss.code], [4001, 'token_wrong_issuer']);
  const noAud = await connect(await token(a, { aud: undefined }));
  t.equal(noAud.code, 'token_wrong_audience', 'a token without aud is refused when --jwt-audience is set');
  const expired = await connect(await new SignJWT({ sub: 'u', aud: AUDIENCE, iss: ISSUER }).setProtectedHeader({ alg: 'RS256', kid: a.kid }).setExpirationTime(Math.floor(Date.now() / 1000) - 120).sign(a.privateKey));
  t.equal(expired.code, 'token_expired');

  // A forged token: right kid, wrong private key.
  const impostor = makeKey('key-a', 'RS256');
  t.equal((await connect(await token(impostor))).code, 'token_bad_signature', 'a kid alone does not make a token valid');

  // Rotation: the provider now publishes only key B. Tokens with its new kid are accepted once the
  // server re-fetched (at most once per cooldown), and key A's tokens stop working.
  served = [b];
  const tokB = await token(b);
  const deadline = Date.now() + 15_000;
  let last;
  while ((last = await connect(tokB)).status !== 101) {
    t.equal(last.code, 'token_unknown_key', 'until the re-fetch, the new kid is unknown (not a crash, not a 500)');
    if (Date.now() > deadline) throw new Error('rotated key never accepted');
    await new Promise((r) => setTimeout(r, 200));
  }
  t.pass('a token with the rotated-in kid connects');
  const tokA = await token(a);
  const dl2 = Date.now() + 15_000;
  while ((last = await connect(tokA)).status === 101) {
    if (Date.now() > dl2) throw new Error('rotated-out key still accepted');
    await new Promise((r) => setTimeout(r, 200));
  }
  t.same([last.status, last.code], [4001, 'token_unknown_key'], 'the rotated-out kid is refused');
  t.match(last.message, /no key in the identity provider's JWKS \(--jwks-url\) matches the token's kid "key-a"/);
  t.notMatch(last.message, /127\.0\.0\.1/, 'the configured URL is not quoted to the client');

  // A flood of unknown kids re-fetches the key set at most once per cooldown per shard, not per token.
  const before = fetches;
  const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => connect(await token(b, {}, `unknown-${i}`))));
  t.ok(results.every((r) => r.code === 'token_unknown_key'), 'every unknown kid refused');
  t.ok(fetches - before <= 2 * 2, `40 unknown kids caused ${fetches - before} fetches (at most one per shard per cooldown, ×2 shards)`);
});

t.test('JWKS: an unreachable key set is a clear refusal, and a bad URL stops the start', async (t) => {
  const s = await startServer(t, { jwksUrl: 'http://127.0.0.1:1/jwks.json', requireAuth: true });
  const key = makeKey('k', 'RS256');
  const o = await openAs(s.port, 'ws', { authorization: `Bearer ${await token(key)}` });
  o.close();
  t.equal(o.closeCode, 4001, 'refused after the upgrade with close 4001');
  t.equal(o.body.error.code, 'token_keys_unavailable');
  t.match(o.body.error.message, /JWKS \(--jwks-url\) could not be fetched/);
  t.notMatch(o.body.error.message, /127\.0\.0\.1/, 'the configured URL is not quoted to the client');
  const err = await startServer(t, { jwksUrl: 'ftp://idp.test/keys' }).then(() => '', (e: Error) => e.message);
  t.match(err, /JWKS URL must be http\(s\)/);
});

t.test('JWKS: a provider answering an error status or non-JSON is token_keys_unavailable, not a bad signature', async (t) => {
  const key = makeKey('k', 'RS256');
  let answer: 'error' | 'html' | 'keys' = 'error';
  const idp = createHttpServer((_req, res) => {
    if (answer === 'error') return res.writeHead(503).end('maintenance');
    if (answer === 'html') return res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.jwk] }));
  });
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  t.teardown(() => idp.close());
  const jwksUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}/jwks.json`;
  const s = await startServer(t, { jwksUrl, jwtAudience: [AUDIENCE], jwtIssuer: [ISSUER], jwksCooldown: 0, requireAuth: true });
  const tok = await token(key);

  for (const kind of ['error', 'html'] as const) {
    answer = kind;
    const ws = await openAs(s.port, 'ws', { authorization: `Bearer ${tok}` });
    ws.close();
    t.same([ws.closeCode, ws.body?.error?.code], [4001, 'token_keys_unavailable'], `${kind}: /ws says the keys are unavailable`);
    t.match(String(ws.body?.error?.message), /JWKS \(--jwks-url\) could not be fetched/);
    const poll = await openAs(s.port, 'poll', { authorization: `Bearer ${tok}` });
    poll.close();
    t.same([poll.status, poll.body?.error?.code], [401, 'token_keys_unavailable'], `${kind}: /poll says the keys are unavailable`);
  }
  answer = 'keys';
  const ok = await openAs(s.port, 'ws', { authorization: `Bearer ${tok}` });
  ok.close();
  t.equal(ok.status, 101, 'the same token connects once the provider answers');
  t.equal(ok.closeCode, undefined);
});

t.test('frames sent while the key set is being fetched: up to 32 are held and answered once it is checked, more are refused', async (t) => {
  const key = makeKey('slow-key', 'RS256');
  // The key set answers only when the test releases it, so the check is pending for as long as needed.
  const waiting: (() => void)[] = [];
  const idp = createHttpServer((req, res) => {
    const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.jwk] }));
    waiting.push(answer);
  });
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const answer of waiting.splice(0)) answer();
    idp.close();
  });
  const jwksUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}/.well-known/jwks.json`;
  const opts = { jwksUrl, jwtAudience: [AUDIENCE], jwtIssuer: [ISSUER], requireAuth: true };
  const s = await startServer(t, opts);
  const fetchStarted = async (n: number) => {
    const deadline = Date.now() + 5000;
    while (waiting.length < n) {
      if (Date.now() > deadline) throw new Error('the server never asked for the key set');
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const open = async (url: string) => {
    const ws = new WebSocket(`${url}/ws`, { headers: { authorization: `Bearer ${await token(key)}` } });
    const frames: any[] = [];
    ws.on('message', (raw) => frames.push(JSON.parse(raw.toString())));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
    return { ws, frames, closed };
  };

  // 32 requests before the check: held, then answered once the key arrives.
  const patient = await open(s.url);
  t.teardown(() => patient.ws.close());
  for (let ref = 1; ref <= 32; ref++) patient.ws.send(JSON.stringify({ op: 'subscribe', channel: `early-${ref}`, ref }));
  await fetchStarted(1);
  t.equal(patient.frames.length, 0, 'no welcome while the key is being fetched');
  for (const answer of waiting.splice(0)) answer();
  const deadline = Date.now() + 5000;
  while (patient.frames.filter((f) => f.op === 'reply').length < 32 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  t.equal(patient.frames[0]?.op, 'welcome', 'welcome first');
  // (Replies come back as each channel's owner answers, so not necessarily in the order sent.)
  const replies = patient.frames.filter((f) => f.op === 'reply').sort((x, y) => x.ref - y.ref);
  t.same(replies.map((f) => [f.ref, f.ok]), Array.from({ length: 32 }, (_, i) => [i + 1, true]), 'every held request answered');

  // The 33rd frame before the check ends the connection: a clear error, then close 4001. A second
  // server, so the key is not cached and its fetch stays pending.
  const s2 = await startServer(t, opts);
  const eager = await open(s2.url);
  for (let ref = 1; ref <= 33; ref++) eager.ws.send(JSON.stringify({ op: 'subscribe', channel: `eager-${ref}`, ref }));
  t.equal(await eager.closed, 4001, 'closed as unauthorized');
  const err = eager.frames.find((f) => f.op === 'error');
  t.equal(err?.error?.code, 'rate_limited');
  t.match(String(err?.error?.message), /32 frames before the token was checked/);
  t.notOk(eager.frames.some((f) => f.op === 'welcome' || f.op === 'reply'), 'nothing of it was admitted');
});

t.test('JWKS: a provider failing from the start is asked again every few seconds, not once per token', async (t) => {
  const key = makeKey('k', 'RS256');
  let up = false;
  let fetches = 0;
  const idp = createHttpServer((_req, res) => {
    fetches++;
    if (!up) return res.writeHead(500).end('down');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.jwk] }));
  });
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  t.teardown(() => idp.close());
  const jwksUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}/jwks.json`;
  const s = await startServer(t, { jwksUrl, jwtAudience: [AUDIENCE], jwtIssuer: [ISSUER], requireAuth: true });
  const tok = await token(key);
  const codes = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const poll = await openAs(s.port, 'poll', { authorization: `Bearer ${tok}` });
    poll.close();
    codes.add(`${poll.status} ${poll.body?.error?.code}`);
  }
  t.same([...codes], ['401 token_keys_unavailable'], 'every token is told the keys are unavailable');
  t.ok(fetches >= 1 && fetches <= 4, `20 tokens caused ${fetches} fetches (at most one or two per thread), not one each`);
  up = true;
  const deadline = Date.now() + 15_000;
  let status = 0;
  while (status !== 101 && Date.now() < deadline) {
    const ws = await openAs(s.port, 'ws', { authorization: `Bearer ${tok}` });
    ws.close();
    status = ws.status ?? 0;
    if (status !== 101) await new Promise((r) => setTimeout(r, 200));
  }
  t.equal(status, 101, 'once the provider answers, the token connects within seconds');
});

t.test('JWKS: a key set that cannot be fetched is logged with its URL masked, and never quoted to the client', async (t) => {
  // A URL holding a secret, as some providers' key-set URLs do (user:password@ is refused at start).
  const secretUrl = 'http://127.0.0.1:1/jwks.json?access_token=jwks-secret-token';
  const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--log-format=json', '--require-auth'], {
    env: cleanEnv({ RT_JWKS_URL: secretUrl, RT_API_KEY: '' }),
  });
  const port = await listeningPort(p);
  const o = await openAs(port, 'ws', { authorization: `Bearer ${await token(makeKey('k', 'RS256'))}` });
  o.close();
  t.same([o.closeCode, o.body?.error?.code], [4001, 'token_keys_unavailable'], 'the client gets the code');
  const told = JSON.stringify(o.body);
  for (const secret of ['jwks-secret-token', '127.0.0.1:1']) t.notOk(told.includes(secret), `the client is not told ${secret}`);
  const logged = await until('the JWKS failure logged', () => p.output().split('\n').find((l) => l.includes('jwks.unavailable')));
  t.match(logged, 'http://127.0.0.1:1/jwks.json?…', 'the log names the URL');
  for (const secret of ['jwks-secret-token']) t.notOk(logged.includes(secret), `the log does not hold ${secret}`);
});
