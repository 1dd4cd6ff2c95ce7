import t from 'tap';
import WebSocket from 'ws';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { RtClient, type TransportName } from 'rt-actors/client';
import { SseStream, request } from './helpers/http-stream.js';

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

/** A raw Socket.IO WebSocket subscribed to `channel` that then stops reading its socket. */
async function pausedSioSubscriber(url: string, channel: string) {
  const { RawWs } = await import('./helpers/sio.js');
  const ws = new RawWs(`${url}/socket.io/?EIO=4&transport=websocket`);
  await ws.opened();
  await ws.next((m) => String(m).startsWith('0'));
  ws.ws.send('40');
  await ws.next((m) => String(m).startsWith('40'));
  ws.ws.send(`421["subscribe",{"channel":${JSON.stringify(channel)}}]`);
  await ws.next((m) => String(m).startsWith('431'));
  (ws.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  return ws;
}

t.test('a Socket.IO subscriber that stops reading is disconnected without harming the shard', async (t) => {
  const { api } = await import('./helpers/server.js');
  const s = await startServer(t, { maxBackpressure: 64 * 1024 });
  const ws = await pausedSioSubscriber(s.url, 'sio-firehose');
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

t.test('a Socket.IO WebSocket uWS drops messages for counts once in rt_slow_consumer_drops_total', async (t) => {
  const { api } = await import('./helpers/server.js');
  const { parsePrometheus, valueOf } = await import('./helpers/prom.js');
  const s = await startServer(t, { maxBackpressure: 64 * 1024 });
  const ws = await pausedSioSubscriber(s.url, 'sio-drops');
  t.teardown(() => ws.ws.terminate());
  // Batches: uWS meets a full buffer with several messages of one turn, before the deferred close runs.
  const big = 'x'.repeat(8 * 1024);
  let batches = 0;
  for (; batches < 500; batches++) {
    const r = await api(s.http, '/api/batch', { messages: Array.from({ length: 6 }, (_, i) => ({ channel: 'sio-drops', event: 'chunk', data: { i, big } })) });
    if (r.status !== 200) throw new Error(`batch refused: ${r.status} ${JSON.stringify(r.body)}`);
    if ((await api(s.http, '/api/channels/sio-drops')).body.subscribers === 0) break;
  }
  t.ok(batches < 500, `the session was dropped after ${batches + 1} batches`);
  const families = parsePrometheus((await api(s.http, '/metrics', undefined, { key: null })).body);
  t.equal(valueOf(families, 'rt_slow_consumer_drops_total'), 1, 'one connection dropped, counted once');
  t.equal(valueOf(families, 'rt_refusals_total', { reason: 'slow_consumer' }), 1, 'and refused once as a slow consumer');
});

t.test('a resume larger than --max-backpressure reaches SSE and long-polling readers; it is not a slow consumer', async (t) => {
  // 300 publications of ~1 KB: one resume carries ~300 KB, past the 128 KiB limit, to a reader that reads.
  const s = await startServer(t, { maxBackpressure: 128 * 1024, historySize: 1000 });
  const pad = 'x'.repeat(1000);
  const N = 300;
  const first = await s.publish('big-resume', 'n', { i: 0, pad });
  for (let i = 1; i < N; i++) await s.publish('big-resume', 'n', { i, pad });
  const ws = await TestClient.connect(s.url + '/ws');
  t.teardown(() => ws.close());
  const { epoch } = await ws.request({ op: 'subscribe', channel: 'big-resume' });
  const since = { offset: first.offset - 1, epoch };

  const sse = await SseStream.open(`${s.http}/sse?channels=big-resume&lastEventId=${since.offset}.${epoch}`);
  t.teardown(() => sse.close());
  t.equal(sse.status, 200, 'SSE: the stream opens');
  const subscribed = await sse.until((evs) => evs.find((e) => e.event === 'rt:subscribed'), 8000, 'rt:subscribed');
  t.match(JSON.parse(subscribed.data), { recovered: true });
  t.same(sse.events.filter((e) => e.event === 'n').map((e) => JSON.parse(e.data).data.i), [...Array(N).keys()], 'SSE: every publication resumed, in order');

  // Two such resumes in one URL: the first is sent and the stream ends (4008) before the second; the
  // reconnect with the last event id gets the second. Each publication arrives once.
  await s.publish('big-resume-2', 'n', { i: 0, pad });
  for (let i = 1; i < N; i++) await s.publish('big-resume-2', 'n', { i, pad });
  const epoch2 = (await ws.request({ op: 'subscribe', channel: 'big-resume-2' })).epoch;
  const seen = new Map<string, number[]>([['big-resume', []], ['big-resume-2', []]]);
  let lastId = `${since.offset}.${epoch},0.${epoch2}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    const two = await SseStream.open(`${s.http}/sse?channels=big-resume,big-resume-2&lastEventId=${lastId}`);
    t.teardown(() => two.close());
    t.equal(two.status, 200, `two resumes, attempt ${attempt}: the stream opens`);
    const end = await two.until((evs) => evs.find((e) => e.event === 'rt:disconnect') ?? (evs.filter((e) => e.event === 'rt:subscribed').length === 2 && 'both'), 8000, 'the end');
    for (const e of two.events) if (e.event === 'n') seen.get(JSON.parse(e.data).channel)!.push(JSON.parse(e.data).data.i);
    two.close();
    if (end === 'both') break;
    t.match(JSON.parse(end.data), { code: 4008, reconnect: true });
    lastId = two.events.filter((e) => e.id !== undefined).at(-1)!.id!;
  }
  for (const [ch, got] of seen) t.same(got, [...Array(N).keys()], `SSE, two resumes: every publication of ${ch} once, in order`);

  const open = await request('GET', `${s.http}/poll`);
  const sid = open.json.frames[0].session;
  await request('POST', `${s.http}/poll?sid=${sid}`, JSON.stringify({ op: 'subscribe', ref: 1, channel: 'big-resume', since }));
  const polled = await request('GET', `${s.http}/poll?sid=${sid}&ack=${open.json.seq}`);
  const reply = polled.json.frames.find((f: { ref?: number }) => f.ref === 1);
  t.ok(reply, `long-polling: the subscribe is answered, not replaced by a disconnect (${JSON.stringify(polled.json.frames.map((f: { op: string; code?: number }) => f.code ?? f.op))})`);
  t.equal(reply?.publications?.length, N, 'long-polling: every publication resumed');

  // The client library resumes after a reconnect on each transport: nothing lost, no resync.
  for (const tr of ['sse', 'polling'] as TransportName[]) {
    const c = new RtClient(s.http, { transports: [tr], reconnectDelay: 50, maxReconnectDelay: 200, rememberTransport: false });
    t.teardown(() => c.disconnect());
    const got: number[] = [];
    const resyncs: unknown[] = [];
    const lost: number[] = [];
    c.on('disconnected', (e) => lost.push(e.code));
    const ch = c.channel(`big-${tr}`).listen('n', (d: { i: number }) => got.push(d.i)).on('resync', (r) => resyncs.push(r));
    await new Promise((r) => ch.subscribed(r));
    c.disconnect();
    for (let i = 0; i < N; i++) await s.publish(`big-${tr}`, 'n', { i, pad });
    await s.publish(`big-${tr}`, 'end', null);
    let ended = false;
    ch.listen('end', () => (ended = true));
    c.connect();
    const deadline = Date.now() + 10_000;
    while (!ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    t.ok(ended, `${tr}: the resume arrived (disconnects: ${lost.join(', ')})`);
    t.same(got, [...Array(N).keys()], `${tr}: every publication once, in order`);
    t.same(resyncs, [], `${tr}: no resync`);
  }
});
