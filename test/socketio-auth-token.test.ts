// The CONNECT payload: `auth` reaches handlers untouched; `auth.token` is a JWT only as
// --socketio-auth-token says (auto / jwt / off); config errors name the key.
import t from 'tap';
import { io } from 'socket.io-client';
import { createServer, signJwt } from 'rt-actors';
import { startServer, JWT_SECRET } from './helpers/server.js';

const ACTORS = new URL('./fixtures/socketio-actors', import.meta.url).pathname;
const jwt = signJwt({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

async function connect(url: string, auth: Record<string, unknown>): Promise<{ who?: any; error?: any }> {
  const c = io(url, { forceNew: true, transports: ['websocket'], reconnection: false, auth });
  try {
    return await new Promise((resolve) => {
      c.once('connect', async () => resolve({ who: await c.emitWithAck('whoami') }));
      c.once('connect_error', (err: any) => resolve({ error: { message: err.message, code: err.data?.code } }));
    });
  } finally {
    c.close();
  }
}

t.test('auto (default): a JWT is verified when JWT is configured; anything else reaches handlers untouched', async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  const plain = await connect(s.http, { token: '123', extra: { a: [1] } });
  t.same(plain.who.auth, { token: '123', extra: { a: [1] } }, 'plain auth untouched');
  t.equal(plain.who.userId, null, 'no user');
  const good = await connect(s.http, { token: jwt });
  t.equal(good.who.userId, 'u1', 'a JWT identifies the user');
  const bad = await connect(s.http, { token: jwt.slice(0, -4) + 'AAAA' });
  t.ok(bad.error, 'a JWT that fails verification refuses the connect');
  t.match(bad.error.code, /^token_/);
});

t.test('auto: a JWT over the 8 KiB token limit is refused as token_malformed, as on the other transports, not let in anonymously', async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  const big = signJwt({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + 600, pad: 'x'.repeat(6200) }, { secret: JWT_SECRET });
  t.ok(big.length > 8192, `the token is ${big.length} characters`);
  const r = await connect(s.http, { token: big });
  t.equal(r.who, undefined, 'not connected');
  t.equal(r.error?.code, 'token_malformed');
  t.match(r.error?.message, /the limit is 8192/);
  const strict = await startServer(t, { actors: ACTORS, requireAuth: true });
  const h = await connect(strict.http, { headers: { Authorization: `Bearer ${big}` } });
  t.equal(h.error?.code, 'token_malformed', "--require-auth: laravel-echo's bearer header says what is wrong with the token, not that there is none");
});

t.test('auto without JWT configuration never refuses; jwt mode always verifies; off never reads it', async (t) => {
  const noJwt = await startServer(t, { actors: ACTORS, jwtSecret: '' });
  const r = await connect(noJwt.http, { token: jwt });
  t.equal(r.who?.userId, null, 'no JWT configured: the token is left to the handlers');
  t.equal(r.who?.auth.token, jwt);
  const strict = await startServer(t, { actors: ACTORS, socketioAuthToken: 'jwt' });
  t.match((await connect(strict.http, { token: '123' })).error, { code: /^token_/ }, 'jwt: a non-JWT token is refused');
  t.match((await connect(strict.http, {})).error, { code: 'unauthorized' }, 'jwt: no token at all is refused');
  t.match((await connect(strict.http, { headers: { 'X-CSRF-TOKEN': 'x' } })).error, { code: 'unauthorized' }, 'jwt: no token, other auth fields: refused');
  t.equal((await connect(strict.http, { headers: { Authorization: `Bearer ${jwt}` } })).who?.userId, 'u1', "jwt: laravel-echo's bearer header is a token");
  t.equal((await connect(strict.http, { token: jwt })).who.userId, 'u1');
  const off = await startServer(t, { actors: ACTORS, socketioAuthToken: 'off' });
  const o = await connect(off.http, { token: jwt });
  t.same([o.who.userId, o.who.auth.token], [null, jwt], 'off: never read');
});

t.test('bad values are start errors naming the option', async (t) => {
  await t.rejects(createServer({ port: 0, workers: 1, env: {}, logLevel: 'error', engineioEchoPath: 'engine.io' }), /engineioEchoPath/);
  await t.rejects(createServer({ port: 0, workers: 1, env: {}, logLevel: 'error', engineioEchoPath: '/socket.io/' }), /engineioEchoPath/);
  await t.rejects(createServer({ port: 0, workers: 1, env: {}, logLevel: 'error', socketioAuthToken: 'maybe' as any }), /socketioAuthToken/);
  await t.rejects(createServer({ port: 0, workers: 1, env: {}, logLevel: 'error', socketioRecovery: '-1s' }), /socketioRecovery/);
});
