// A request handler that never answers (a backend that hangs) is answered handler_timeout at the actor
// hooks' deadline, on Socket.IO acks and native rpc alike, and the connection goes on working.
import t from 'tap';
import { startServer } from './helpers/server.js';
import { sioConnect } from './helpers/sio.js';
import { TestClient } from './helpers/ws-client.js';

const ACTORS = new URL('./fixtures/socketio-actors', import.meta.url).pathname;

t.test('a handler past --actor-hook-timeout is answered handler_timeout', async (t) => {
  const s = await startServer(t, { actors: ACTORS, actorHookTimeout: 0.3 });
  const c = await sioConnect(t, s.http, { transports: ['websocket'] });
  t.same(await c.timeout(5000).emitWithAck('hang'), { error: { code: 'handler_timeout', message: 'the request handler did not answer within 300 ms' } }, 'Socket.IO ack');
  t.same(await c.emitWithAck('echo', 1), [1], 'the socket goes on working');

  const native = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => native.ws.close());
  t.match(await native.request({ op: 'rpc', event: 'hang', data: null }), { ok: false, error: { code: 'handler_timeout' } }, 'native rpc');
  t.match(await native.request({ op: 'rpc', event: 'echo', data: 2 }), { ok: true, data: [2] }, 'and goes on working');
});
