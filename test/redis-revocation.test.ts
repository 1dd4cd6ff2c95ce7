// With --redis, POST /api/users/:id/disconnect revokes the user's tokens on every host, including hosts
// that start afterwards (a rolling deploy, a new host behind the load balancer) and hosts that were cut
// off from Redis when it happened. Before, revocations lived only in the memory of the hosts running
// then: a banned user's old token was accepted again by any host started later, or by a host whose
// Redis connections dropped while the revocation's notice went by.
// A Redis of its own: the test kills connections.
import t from 'tap';
import { signJwt } from 'rt-actors';
import WebSocket from 'ws';
import { randomBytes } from 'node:crypto';
import { api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { redisClient, startHost, startRedis, until } from './helpers/redis.js';

const ns = 'rt';
const redis = await startRedis(t);
const admin = redisClient(t, redis.port);

/** The upgrade's HTTP status: 101 when the token is accepted, 401 with its code when not. */
function upgrade(http: string, token: string): Promise<{ status: number; code?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${http.replace('http', 'ws')}/ws?token=${token}`);
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101 });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, code: JSON.parse(body)?.error?.code }));
    });
    ws.once('error', reject);
  });
}

t.test('a revocation holds on a host started after it', async (t) => {
  const A = await startHost(t, redis.url, ns);
  const iat = Math.floor(Date.now() / 1000) - 60;
  const old = signJwt({ sub: 'banned', iat, exp: iat + 3600 }, { secret: JWT_SECRET });
  t.equal((await api(A.http, '/api/users/banned/disconnect', {})).status, 200);
  t.match(await upgrade(A.http, old), { status: 401, code: 'token_revoked' }, 'refused where it was revoked');
  const B = await startHost(t, redis.url, ns, { workers: 2 });
  t.match(await upgrade(B.http, old), { status: 401, code: 'token_revoked' }, 'refused by a host started later');
  const fresh = signJwt({ sub: 'banned', iat: iat + 120, exp: iat + 3600 }, { secret: JWT_SECRET });
  t.match(await upgrade(B.http, fresh), { status: 101 }, 'a token issued after the revocation is accepted');
  const other = signJwt({ sub: 'someone-else', iat, exp: iat + 3600 }, { secret: JWT_SECRET });
  t.match(await upgrade(B.http, other), { status: 101 }, "another user's token is not affected");
});

t.test('a host that missed the notice reads the revocation when its connections come back', async (t) => {
  const A = await startHost(t, redis.url, ns);
  const iat = Math.floor(Date.now() / 1000) - 60;
  for (const [type, user] of [['pubsub', 'missed-1'], ['normal', 'missed-2']] as const) {
    const old = signJwt({ sub: user, iat, exp: iat + 3600 }, { secret: JWT_SECRET });
    t.match(await upgrade(A.http, old), { status: 101 }, `${user}: accepted before`);
    const live = await TestClient.connect(`${A.url}/ws?token=${old}`);
    t.teardown(() => live.close());
    const bystander = await TestClient.connect(`${A.url}/ws?token=${signJwt({ sub: `${user}-friend`, iat, exp: iat + 3600 }, { secret: JWT_SECRET })}`);
    t.teardown(() => bystander.close());
    // A revocation made while this host's connections were down: kept in Redis, its notice missed.
    await admin.hset(`${ns}:revoked`, user, String(iat + 1));
    t.ok(Number(await admin.client('KILL', 'TYPE', type)) >= 1, `killed the host's ${type} connections`);
    await until(`${user} refused after the ${type} connection came back`, async () => (await upgrade(A.http, old)).code === 'token_revoked');
    t.pass(`${user}: refused once the ${type} connection is back`);
    t.equal((await live.waitClose(15_000)).code, 4011, `${user}: the connection it had open is ended too, as the missed kick would have`);
    t.equal((await bystander.request({ op: 'ping' })).ok, true, "another user's connection stays");
  }
});
