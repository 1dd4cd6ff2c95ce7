// Binary a Socket.IO client sends (attachments with the JSON parser, bin with msgpack) reaches native
// JSON subscribers as the documented {"type":"Buffer","data":[…]} (protocol.md), whatever the
// transport and shard. Before, attachments that came over a WebSocket (and every msgpack-parser bin)
// were plain Uint8Arrays: a JSON subscriber on the sender's shard got {"0":3,"1":4}.
import t, { type Test } from 'tap';
import msgpackParser from 'socket.io-msgpack-parser';
import { signJwt } from 'rt-actors';
import { startServer, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { sioConnect, type SioOptions } from './helpers/sio.js';

const token = (sub: string) => signJwt({ sub, channels: ['private-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

async function check(t: Test, opts: Record<string, unknown>, clientOpts: SioOptions) {
  const s = await startServer(t, opts);
  const channel = 'private-bin';
  // Two native subscribers: the round-robin acceptor puts one on each shard, so one shares the sender's.
  const natives: TestClient[] = [];
  for (const user of ['n1', 'n2']) {
    const c = await TestClient.connect(`${s.url}/ws?token=${token(user)}`);
    t.teardown(() => c.close());
    t.equal((await c.request({ op: 'subscribe', channel })).ok, true, `${user} subscribed`);
    natives.push(c);
  }
  t.not(natives[0]!.welcome.socket_id.split('.')[0], natives[1]!.welcome.socket_id.split('.')[0], 'the natives are on different shards');
  for (const transports of [['websocket'], ['polling']]) {
    const sio = await sioConnect(t, s.http, { transports, auth: { token: token('s') }, ...clientOpts });
    t.same(await sio.emitWithAck('subscribe', { channel }), { ok: true });
    const data = { b: Buffer.from([3, 4]), t: transports[0] };
    t.same(await sio.emitWithAck('client event', { channel, event: 'client-bin', data }), { ok: true }, `${transports[0]}: whisper taken`);
    for (const [i, c] of natives.entries()) {
      const f = await c.next((f) => f.op === 'message' && f.data?.t === transports[0]);
      t.same(f.data.b, { type: 'Buffer', data: [3, 4] }, `${transports[0]}: native ${i + 1} gets the binary as {"type":"Buffer","data":[…]}`);
    }
    sio.close();
  }
}

t.test('JSON parser: attachments over WebSocket and polling', async (t) => {
  await check(t, {}, {});
});

t.test('msgpack parser: bin over WebSocket and polling', async (t) => {
  await check(t, { socketioParser: 'msgpack' }, { parser: msgpackParser });
});
