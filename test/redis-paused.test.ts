// A Redis that stops answering (paused: SIGSTOP, a long fork, a stuck disk) still holds the commands sent
// to it and runs them when it resumes. A publish that timed out meanwhile is answered 503, but may yet be
// delivered: the answer must say so (it said "retry shortly", and the retry was delivered twice).
import t from 'tap';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { redisCall, startHost, startRedis, until } from './helpers/redis.js';

const redis = await startRedis(t);
const pid = Number(/process_id:(\d+)/.exec(String(await redisCall(redis.port, 'INFO', 'server')))![1]);
const host = await startHost(t, redis.url, 'rt');
t.teardown(() => {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {}
});

t.test('a publish that timed out on a paused Redis says its outcome is unknown', async (t) => {
  const c = await TestClient.connect(host.url + '/ws');
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'paused' })).ok, true);
  const before = host.output().length;
  process.kill(pid, 'SIGSTOP');
  let r: { status: number; body: any };
  try {
    [r] = await Promise.all([
      api(host.http, '/api/publish', { channel: 'paused', event: 'e', data: 'late' }),
      api(host.http, '/api/publish', { channel: 'paused-too', event: 'e', data: 'late' }),
    ]);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  // The connection stayed up, so nothing said "connection lost": the operator must still learn why.
  const slow = () => host.output().slice(before).split('\n').filter((l) => /WARN .*Redis did not answer within 5 s: operations waiting on it fail with 503/.test(l));
  // A shard's lines reach stderr through the main thread: possibly after the answer.
  await until('the stall to be logged', () => slow().length > 0);
  t.equal(slow().length, 1, 'the stall is logged, once for both timed-out publishes');
  t.equal(r.status, 503);
  t.equal(r.body.error.code, 'unavailable');
  t.match(r.body.error.message, /outcome is unknown: a publish may still be delivered/, 'the answer does not promise nothing happened');
  const [m] = await c.waitForMessages('paused', 1);
  t.equal(m!.data, 'late', 'and indeed it was delivered once Redis resumed');
});

// Reads change nothing in Redis: their timeout said "a publish may still be delivered" too, and sent an
// operator who only asked for the channel list looking for a publication that could not exist.
t.test('a read that timed out on a paused Redis says Redis was slow, not that a publish may be delivered', async (t) => {
  process.kill(pid, 'SIGSTOP');
  let answers: { status: number; body: any }[];
  try {
    answers = await Promise.all(['/api/channels', '/api/channels/paused', '/api/channels/presence-paused/users'].map((path) => api(host.http, path)));
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  for (const [i, r] of answers.entries()) {
    t.equal(r.status, 503, `read ${i}: 503`);
    t.equal(r.body.error.code, 'unavailable');
    t.match(r.body.error.message, /^Redis unavailable: Redis did not answer in time; retry shortly$/, `read ${i}: says Redis was slow`);
    t.notMatch(r.body.error.message, /publish|outcome/, `read ${i}: no publish to worry about`);
  }
});
