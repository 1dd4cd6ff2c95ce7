// The official Engine.IO protocol test suite (socketio/engine.io-protocol, test-suite/test-suite.js, 24
// tests), re-implemented with tap against a 2-shard server's raw Engine.IO echo endpoint
// (--engineio-echo-path). Each `t.test` is one test of the suite, with the suite's settings (ping 300 ms /
// 200 ms, maxPayload 1e6). The racy ones (concurrent requests, upgrades) run several rounds on fresh
// connections, so both shards receive every kind of request.
import t from 'tap';
import { startServer } from './helpers/server.js';
import { RawSocket } from './helpers/raw-eio.js';
import { request } from './helpers/http-stream.js';

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;
const ROUNDS = 6;

const s = await startServer(t, { socketioPingInterval: '300ms', socketioPingTimeout: '200ms', engineioEchoPath: '/engine.io/' });
const URL = `${s.http}/engine.io/`;
const WS_URL = `${s.url}/engine.io/`;

/** One request on its own TCP connection (so consecutive requests reach both shards). */
const get = (q: string) => request('GET', `${URL}?${q}`);
const post = (q: string, body: string) => request('POST', `${URL}?${q}`, body, { 'content-type': 'text/plain;charset=UTF-8' });

async function openPolling(): Promise<string> {
  const r = await get('EIO=4&transport=polling');
  return JSON.parse(r.text.substring(1)).sid;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('handshake / polling: opens a session', async (t) => {
  const r = await fetch(`${URL}?EIO=4&transport=polling`);
  t.equal(r.status, 200);
  const content = await r.text();
  t.equal(content[0], '0');
  const v = JSON.parse(content.substring(1));
  t.same(Object.keys(v).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
  t.type(v.sid, 'string');
  t.same(v.upgrades, ['websocket']);
  t.equal(v.pingInterval, PING_INTERVAL);
  t.equal(v.pingTimeout, PING_TIMEOUT);
  t.equal(v.maxPayload, 1000000);
});

t.test("handshake / polling: an invalid 'EIO' query parameter is a 400", async (t) => {
  t.equal((await fetch(`${URL}?transport=polling`)).status, 400);
  t.equal((await fetch(`${URL}?EIO=abc&transport=polling`)).status, 400);
});

t.test("handshake / polling: an invalid 'transport' query parameter is a 400", async (t) => {
  t.equal((await fetch(`${URL}?EIO=4`)).status, 400);
  t.equal((await fetch(`${URL}?EIO=4&transport=abc`)).status, 400);
});

t.test('handshake / polling: an invalid request method is a 400', async (t) => {
  t.equal((await fetch(`${URL}?EIO=4&transport=polling`, { method: 'POST' })).status, 400, 'POST without a sid');
  t.equal((await fetch(`${URL}?EIO=4&transport=polling`, { method: 'PUT' })).status, 400, 'PUT');
  const sid = await openPolling();
  t.equal((await fetch(`${URL}?EIO=4&transport=polling&sid=${sid}`, { method: 'DELETE' })).status, 400, 'DELETE with a sid');
});

t.test('handshake / websocket: opens a session', async (t) => {
  const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket`);
  t.teardown(() => ws.close());
  const data = (await ws.next()) as string;
  t.equal(data[0], '0');
  const v = JSON.parse(data.substring(1));
  t.same(Object.keys(v).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
  t.same(v.upgrades, []);
  t.equal(v.pingInterval, PING_INTERVAL);
  t.equal(v.pingTimeout, PING_TIMEOUT);
  t.equal(v.maxPayload, 1000000);
});

t.test("handshake / websocket: an invalid 'EIO' query parameter closes the socket", async (t) => {
  for (const q of ['transport=websocket', 'EIO=abc&transport=websocket']) {
    const ws = new RawSocket(`${WS_URL}?${q}`);
    await ws.waitClose();
    t.equal(ws.refusedWith, 400, q);
  }
});

t.test("handshake / websocket: an invalid 'transport' query parameter closes the socket", async (t) => {
  for (const q of ['EIO=4', 'EIO=4&transport=abc']) {
    const ws = new RawSocket(`${WS_URL}?${q}`);
    await ws.waitClose();
    t.equal(ws.refusedWith, 400, q);
  }
});

t.test('message / polling: a payload with one text packet comes back', async (t) => {
  const sid = await openPolling();
  const p = await post(`EIO=4&transport=polling&sid=${sid}`, '4hello');
  t.equal(p.status, 200);
  t.equal(p.text, 'ok');
  const g = await get(`EIO=4&transport=polling&sid=${sid}`);
  t.equal(g.status, 200);
  t.equal(g.text, '4hello');
});

t.test('message / polling: a payload with several text packets comes back', async (t) => {
  const sid = await openPolling();
  const p = await post(`EIO=4&transport=polling&sid=${sid}`, '4test1\x1e4test2\x1e4test3');
  t.equal(p.status, 200);
  t.equal(p.text, 'ok');
  const g = await get(`EIO=4&transport=polling&sid=${sid}`);
  t.equal(g.text, '4test1\x1e4test2\x1e4test3');
});

t.test('message / polling: a payload with text and binary packets comes back', async (t) => {
  const sid = await openPolling();
  const p = await post(`EIO=4&transport=polling&sid=${sid}`, '4hello\x1ebAQIDBA==');
  t.equal(p.status, 200);
  t.equal(p.text, 'ok');
  const g = await get(`EIO=4&transport=polling&sid=${sid}`);
  t.equal(g.text, '4hello\x1ebAQIDBA==');
});

t.test('message / polling: an invalid packet closes the session', async (t) => {
  for (let i = 0; i < ROUNDS; i++) {
    const sid = await openPolling();
    t.equal((await post(`EIO=4&transport=polling&sid=${sid}`, 'abc')).status, 400, 'invalid payload refused');
    t.equal((await get(`EIO=4&transport=polling&sid=${sid}`)).status, 400, 'and the session is gone at once');
  }
});

t.test('message / polling: duplicate polls close the session', async (t) => {
  for (let i = 0; i < ROUNDS; i++) {
    const sid = await openPolling();
    const first = get(`EIO=4&transport=polling&sid=${sid}`);
    await sleep(5); // the suite's own spacing: the second poll arrives while the first is held
    const second = await get(`EIO=4&transport=polling&sid=${sid}&t=burst`);
    const r1 = await first;
    // Normally the first is held and the second is the duplicate; on a loaded machine the first
    // request can reach the server after the second (two connections), and then the roles swap.
    const answers = [r1, second].map((r) => (r.status === 200 ? `200 ${r.text}` : String(r.status))).sort();
    t.same(answers, ['200 1', '400'], 'the held poll gets the close packet, the duplicate a 400');
    t.equal((await get(`EIO=4&transport=polling&sid=${sid}`)).status, 400);
  }
});

t.test('message / websocket: a text packet comes back', async (t) => {
  const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket`);
  t.teardown(() => ws.close());
  await ws.opened;
  await ws.next();
  ws.send('4hello');
  t.equal(await ws.next({ skipPings: true }), '4hello');
});

t.test('message / websocket: a binary packet comes back', async (t) => {
  const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket`);
  t.teardown(() => ws.close());
  await ws.next();
  ws.send(Uint8Array.from([1, 2, 3, 4]));
  t.same([...((await ws.next({ skipPings: true })) as Buffer)], [1, 2, 3, 4]);
});

t.test('message / websocket: an invalid packet closes the session', async (t) => {
  const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket`);
  await ws.next();
  ws.send('abc');
  await ws.waitClose();
  t.ok(ws.closed);
});

t.test('heartbeat / polling: ping and pong', async (t) => {
  const sid = await openPolling();
  for (let i = 0; i < 3; i++) {
    const g = await get(`EIO=4&transport=polling&sid=${sid}`);
    t.equal(g.status, 200);
    t.equal(g.text, '2', `ping ${i}`);
    t.equal((await post(`EIO=4&transport=polling&sid=${sid}`, '3')).status, 200, `pong ${i}`);
  }
});

t.test('heartbeat / polling: the session closes upon ping timeout', async (t) => {
  // The suite's check is time itself: pingInterval + pingTimeout after the handshake the session is gone,
  // whether or not the server's timer has run yet.
  const sid = await openPolling();
  // Waited on the clock, not with one timer: a timer can fire early by the age of the event loop's
  // cached time, and the server's deadline was set before its handshake answer left.
  const opened = performance.now();
  while (performance.now() - opened <= PING_INTERVAL + PING_TIMEOUT + 5) await sleep(5);
  t.equal((await get(`EIO=4&transport=polling&sid=${sid}`)).status, 400);
  // The same seen from a client that polls: the ping, then the close packet, then nothing.
  const sid2 = await openPolling();
  t.equal((await get(`EIO=4&transport=polling&sid=${sid2}`)).text, '2');
  const last = await get(`EIO=4&transport=polling&sid=${sid2}`);
  t.same([last.status, last.text], [200, '1'], 'the held poll gets the close packet');
  t.equal((await get(`EIO=4&transport=polling&sid=${sid2}`)).status, 400);
});

t.test('heartbeat / websocket: ping and pong', async (t) => {
  const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket`);
  t.teardown(() => ws.close());
  await ws.next();
  for (let i = 0; i < 3; i++) {
    t.equal(await ws.next(), '2', `ping ${i}`);
    ws.send('3');
  }
});

t.test('heartbeat / websocket: the session closes upon ping timeout', async (t) => {
  const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket`);
  t.equal((await ws.next()).toString()[0], '0');
  t.equal(await ws.next(), '2');
  await ws.waitClose();
  t.ok(ws.closed);
});

t.test('close / polling: a close packet ends the session; the held poll gets a noop', async (t) => {
  for (let i = 0; i < ROUNDS * 2; i++) {
    const sid = await openPolling();
    const [g, p] = await Promise.all([get(`EIO=4&transport=polling&sid=${sid}`), post(`EIO=4&transport=polling&sid=${sid}`, '1')]);
    t.equal(g.status, 200, `round ${i}: poll answered`);
    t.equal(g.text, '6', `round ${i}: with a noop`);
    t.equal(p.status, 200);
    t.equal((await get(`EIO=4&transport=polling&sid=${sid}`)).status, 400, `round ${i}: then the session is gone`);
  }
  // The same with the suite's client: fetch, which may reuse keep-alive connections.
  const sid = await openPolling();
  const [g] = await Promise.all([fetch(`${URL}?EIO=4&transport=polling&sid=${sid}`), fetch(`${URL}?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '1' })]);
  t.equal(g.status, 200);
  t.equal(await g.text(), '6');
  t.equal((await fetch(`${URL}?EIO=4&transport=polling&sid=${sid}`)).status, 400);
});

t.test('close / websocket: a close packet ends the session', async (t) => {
  const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket`);
  await ws.next();
  ws.send('1');
  await ws.waitClose();
  t.ok(ws.closed);
});

t.test('upgrade: polling to websocket', async (t) => {
  for (let i = 0; i < ROUNDS; i++) {
    const sid = await openPolling();
    const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket&sid=${sid}`);
    t.teardown(() => ws.close());
    await ws.opened;
    ws.send('2probe');
    t.equal(await ws.next(), '3probe');
    const g = await get(`EIO=4&transport=polling&sid=${sid}`);
    t.same([g.status, g.text], [200, '6'], 'a poll during the upgrade ends with a noop');
    ws.send('5');
    ws.send('4hello');
    t.equal(await ws.next({ skipPings: true }), '4hello');
    ws.close();
  }
});

t.test('upgrade: HTTP requests with the sid of an upgraded session are a 400', async (t) => {
  for (let i = 0; i < ROUNDS; i++) {
    const sid = await openPolling();
    const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket&sid=${sid}`);
    t.teardown(() => ws.close());
    await ws.opened;
    ws.send('2probe');
    ws.send('5');
    t.equal((await get(`EIO=4&transport=polling&sid=${sid}`)).status, 400, `round ${i}`);
    ws.send('4hello');
    t.equal(await ws.next({ skipPings: true }).then((m) => (m === '3probe' ? ws.next({ skipPings: true }) : m)), '4hello');
    ws.close();
  }
});

t.test('upgrade: a WebSocket with the sid of an upgraded session is accepted, then closed', async (t) => {
  for (let i = 0; i < ROUNDS; i++) {
    const sid = await openPolling();
    const ws = new RawSocket(`${WS_URL}?EIO=4&transport=websocket&sid=${sid}`);
    t.teardown(() => ws.close());
    await ws.opened;
    ws.send('2probe');
    // The first probe to reach the session's home thread takes the session. An open WebSocket has not
    // necessarily reached it yet (its probe is forwarded when it landed on another thread), so the
    // pong is what says this one holds the session before a second one tries.
    t.equal(await ws.next({ skipPings: true }), '3probe');
    ws.send('5');
    const ws2 = new RawSocket(`${WS_URL}?EIO=4&transport=websocket&sid=${sid}`);
    await ws2.waitClose();
    t.equal(ws2.refusedWith, undefined, `round ${i}: not refused at the HTTP level`);
    ws.send('4hello');
    t.equal(await ws.next({ skipPings: true }), '4hello');
    ws.close();
  }
});
