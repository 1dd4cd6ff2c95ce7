import t from 'tap';
import WebSocket from 'ws';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

t.test('a subscriber too slow to keep up is told and disconnected, not left with a silent gap', async (t) => {
  const s = await startServer(t, { maxBackpressure: 64 * 1024 });
  const fast = await TestClient.connect(s.url + '/ws');
  t.teardown(() => fast.close());
  await fast.request({ op: 'subscribe', channel: 'firehose' });
  // The slow client stops reading from its socket after subscribing.
  const slow = new WebSocket(s.url + '/ws');
  const closed = new Promise<{ code: number; reason: string }>((r) => slow.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  await new Promise<void>((resolve) => {
    slow.on('message', (m) => {
      const f = JSON.parse(m.toString());
      if (f.op === 'welcome') slow.send(JSON.stringify({ op: 'subscribe', channel: 'firehose', ref: 1 }));
      if (f.op === 'reply') resolve();
    });
  });
  (slow as unknown as { _socket: { pause(): void } })._socket.pause();
  const big = 'x'.repeat(8 * 1024);
  let sent = 0;
  // Publish until the server has dropped the slow subscriber (its subscription disappears), then let the
  // client read again: it must find the buffered messages followed by a close that says why.
  for (; sent < 3000; sent++) {
    await s.publish('firehose', 'chunk', { i: sent, big });
    await new Promise((r) => setTimeout(r, 1)); // a steady stream, not one burst
    if (sent % 20 === 0 && (await s.channels()).find((c) => c.name === 'firehose')?.subscribers === 1) break;
  }
  t.ok(sent < 3000, `server gave up on the slow subscriber after ${sent} messages`);
  (slow as unknown as { _socket: { resume(): void } })._socket.resume();
  const c = await closed;
  t.equal(c.code, 4008, 'closed with the slow-consumer code');
  t.match(c.reason, /slow consumer/);
  // the fast subscriber was not affected and got everything in order
  const got = await fast.waitForMessages('firehose', sent, 20000);
  t.ok(got.every((f, i) => f.data.i === i), 'fast subscriber got every message in order');
});

t.test('a Socket.IO subscriber that stops reading is disconnected without harming the shard', async (t) => {
  const { RawWs } = await import('./helpers/sio.js');
  const { api } = await import('./helpers/server.js');
  const s = await startServer(t, { maxBackpressure: 64 * 1024 });
  const ws = new RawWs(`${s.url}/socket.io/?EIO=4&transport=websocket`);
  await ws.opened();
  await ws.next((m) => String(m).startsWith('0'));
  ws.ws.send('40');
  await ws.next((m) => String(m).startsWith('40'));
  ws.ws.send('421["subscribe",{"channel":"sio-firehose"}]');
  await ws.next((m) => String(m).startsWith('431'));
  (ws.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const big = 'x'.repeat(8 * 1024);
  let sent = 0;
  for (; sent < 5000; sent++) {
    await s.publish('sio-firehose', 'chunk', { i: sent, big });
    if (sent % 50 === 0 && !(await s.channels()).some((c) => c.name === 'sio-firehose')) break;
  }
  t.ok(sent < 5000, `the session was dropped after ${sent} messages`);
  const h = await api(s.http, '/health', undefined, { key: null });
  t.same(h.body.workers, { total: 2, alive: 2, stuck: 0 }, 'both shards alive');
  ws.ws.terminate();
});
