// Graceful shutdown as docs/deployment.md describes it: API requests in flight when it begins are
// answered (for up to --shutdown-timeout, whatever it is), before clients are told to reconnect; one
// still running at the deadline is answered 503, not cut off without an answer.
import t from 'tap';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { FAULT_ACTORS, listenProbe } from './helpers/faults.js';

t.test('a publish in flight for longer than 5 s finishes within a longer --shutdown-timeout', async (t) => {
  const probe = listenProbe(t);
  const s = await startServer(t, { workers: 1, actors: FAULT_ACTORS, actorHookTimeout: 30, shutdownTimeout: 30 });
  const c = await TestClient.connect(s.url + '/ws');
  await c.request({ op: 'subscribe', channel: 'probe-drain' });
  // 6 s: past the fixed 5 s the drain used to give in-flight requests, well inside the 30 s asked for.
  const pub = api(s.http, '/api/publish', { channel: 'probe-drain', event: 'hold', data: { tag: 'drain', ms: 6000 } });
  await probe.next((p) => p.held === 'drain');
  const closed = s.close();
  const answer = await pub;
  t.equal(answer.status, 200, `the in-flight publish is answered (${JSON.stringify(answer.body)})`);
  const msg = await c.next((f) => f.op === 'message' || f.op === 'disconnect', 10_000);
  t.match(msg, { op: 'message', channel: 'probe-drain', event: 'hold' }, 'its subscriber gets it before the goodbye');
  t.equal((await c.waitClose(10_000)).code, 1012);
  await closed;
});

t.test('a request still in flight at the --shutdown-timeout deadline is answered 503', async (t) => {
  const probe = listenProbe(t);
  const s = await startServer(t, { workers: 1, actors: FAULT_ACTORS, actorHookTimeout: 30, shutdownTimeout: 1 });
  const pub = api(s.http, '/api/publish', { channel: 'probe-cut', event: 'hold', data: { tag: 'cut', ms: 20_000 } }).catch((err: Error) => ({ status: 0, body: err.message }));
  await probe.next((p) => p.held === 'cut');
  await s.close();
  const answer = await pub;
  t.equal(answer.status, 503, `answered, not dropped (${JSON.stringify(answer.body)})`);
  t.match(answer.body, { error: { code: 'unavailable', message: /shut.*down/ } });
});
