// A subscriber count that Redis refused to record while its connection stayed up (writes refused, a slot
// unserved during a Cluster failover) was left for recover(), which runs only after a reconnect: none came,
// and GET /api/channels/:name on every host kept counting subscribers that had left, for good.
import t from 'tap';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { redisCall, startHost, startRedis, until } from './helpers/redis.js';

const R = await startRedis(t);
const A = await startHost(t, R.url, 'rt');
const B = await startHost(t, R.url, 'rt');

t.test('a count Redis refused while connected is written once Redis takes writes again', async (t) => {
  const stay = await TestClient.connect(A.url + '/ws');
  const leave = await TestClient.connect(A.url + '/ws');
  t.teardown(() => (stay.close(), leave.close()));
  for (const c of [stay, leave]) t.equal((await c.request({ op: 'subscribe', channel: 'counted' })).ok, true);
  await until('both subscribers counted', async () => (await api(B.http, '/api/channels/counted')).body.subscribers === 2);
  // Writes refused, the connection up: no reconnect will follow.
  await redisCall(R.port, 'CONFIG', 'SET', 'min-replicas-to-write', '1');
  try {
    t.equal((await leave.request({ op: 'unsubscribe', channel: 'counted' })).ok, true);
    await until('the refused count write to be logged', () => /subscriber count not recorded/.test(A.output()));
  } finally {
    await redisCall(R.port, 'CONFIG', 'SET', 'min-replicas-to-write', '0');
  }
  await until('the count to come down on the other host', async () => (await api(B.http, '/api/channels/counted')).body.subscribers === 1);
  t.pass();
});
