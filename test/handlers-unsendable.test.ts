// A request handler whose answer JSON cannot carry (a BigInt, a cycle) is answered bad_reply on every
// transport, as the Socket.IO ack always was; over native rpc the encoding threw in a promise callback
// and ended the shard serving the connection (WebSocket and long-polling alike).
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { sioConnect } from './helpers/sio.js';
import { request } from './helpers/http-stream.js';

const actors = fileURLToPath(new URL('./fixtures/unsendable-handlers', import.meta.url));

t.test('bad_reply over native rpc (WebSocket, long-polling) and Socket.IO; the shard lives', async (t) => {
  // One server for the three: a start is most of such a test's time.
  const s = await startServer(t, { actors, pollTimeout: '2s' });

  t.test('native rpc over a WebSocket: bad_reply, and the connection goes on', async (t) => {
    const c = await TestClient.connect(`${s.url}/ws`);
    t.teardown(() => c.close());
    t.match(await c.request({ op: 'rpc', event: 'bigint', data: null }), { ok: false, error: { code: 'bad_reply', message: /BigInt/ } }, 'a BigInt answer');
    t.match(await c.request({ op: 'rpc', event: 'cycle', data: null }), { ok: false, error: { code: 'bad_reply', message: /circular/ } }, 'a cyclic answer');
    t.same(await c.request({ op: 'rpc', event: 'echo', data: 'still here' }), { op: 'reply', ok: true, data: 'still here', ref: 3 }, 'the same connection is answered: its shard lives');
    t.equal(c.closed, undefined, 'never disconnected');
    const health = await (await fetch(`${s.http}/health`)).json();
    t.equal(health.workers.alive, 2, 'no shard was replaced');
  });

  t.test('native rpc over long-polling: bad_reply comes down the poll', async (t) => {
    const open = await request('GET', `${s.http}/poll`);
    const sid = open.json.frames[0].session as string;
    let ack = open.json.seq as number;
    const frames = [{ op: 'rpc', ref: 1, event: 'bigint', data: null }, { op: 'rpc', ref: 2, event: 'echo', data: 'after' }];
    t.equal((await request('POST', `${s.http}/poll?sid=${sid}`, JSON.stringify(frames), { 'content-type': 'text/plain' })).status, 200);
    const got: any[] = [];
    const deadline = Date.now() + 10_000;
    while (!got.some((f) => f.ref === 2)) {
      if (Date.now() > deadline) throw new Error(`no answer to ref 2; got ${JSON.stringify(got)}`);
      const r = await request('GET', `${s.http}/poll?sid=${sid}&ack=${ack}`);
      t.equal(r.status, 200, 'the session is alive');
      if (r.status !== 200) return;
      ack = r.json.seq;
      got.push(...r.json.frames);
    }
    t.match(got.find((f) => f.ref === 1), { op: 'reply', ok: false, error: { code: 'bad_reply' } }, 'the BigInt answer');
    t.match(got.find((f) => f.ref === 2), { op: 'reply', ok: true, data: 'after' }, 'the next rpc of the session');
    t.notOk(got.some((f) => f.op === 'disconnect'), 'no disconnect (shard restarting)');
  });

  t.test('Socket.IO: the same answer through the ack', async (t) => {
    const c = await sioConnect(t, s.http, { transports: ['websocket'] });
    t.match(await c.timeout(5000).emitWithAck('bigint'), { error: { code: 'bad_reply' } });
    t.equal(await c.timeout(5000).emitWithAck('echo', 1), 1);
  });
});
