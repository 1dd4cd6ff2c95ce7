// The official Socket.IO protocol test suite (socketio/socket.io-protocol, test-suite/test-suite.js, 32
// tests), re-implemented with tap against a 2-shard server. The suite's server has handlers on '/' and
// '/custom' (test/fixtures/socketio-suite): on connect they emit `auth` with the CONNECT payload;
// `message` → `message-back` with the same arguments; `message-with-ack` → an ack with the same
// arguments. Settings as in the suite: ping 300 ms / 200 ms, maxPayload 1e6, connect timeout 1 s.
// The racy tests run several rounds on fresh connections, so both shards receive every kind of request.
import t from 'tap';
import { startServer } from './helpers/server.js';
import { RawSocket } from './helpers/raw-eio.js';
import { request } from './helpers/http-stream.js';

const PING_INTERVAL = 300;
// The official suite's server waits 200 ms for a pong; a loaded 2-core CI machine took longer between
// answering a poll's ping and the test's POST of the pong, so the session closed under the check.
const PING_TIMEOUT = 1000;
const ROUNDS = 6;
const SUITE = new URL('./fixtures/socketio-suite', import.meta.url).pathname;

const s = await startServer(t, { actors: SUITE, socketioPingInterval: `${PING_INTERVAL}ms`, socketioPingTimeout: `${PING_TIMEOUT}ms`, socketioConnectTimeout: '1s', socketioRecovery: 0 }); // the suite's reference server runs without recovery (its CONNECT reply has no pid)
const BASE = `${s.http}/socket.io/`;
const WS_URL = `${s.url}/socket.io/`;

const get = (q: string) => request('GET', `${BASE}?${q}`);
const post = (q: string, body: string) => request('POST', `${BASE}?${q}`, body, { 'content-type': 'text/plain;charset=UTF-8' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function openPolling(): Promise<string> {
  const r = await get('EIO=4&transport=polling');
  return JSON.parse(r.text.substring(1)).sid;
}

function ws(q = 'EIO=4&transport=websocket'): RawSocket {
  const w = new RawSocket(`${WS_URL}?${q}`);
  t.teardown(() => w.close());
  return w;
}

/** A WebSocket session joined to '/', past its CONNECT reply and the `auth` event. */
async function connected(): Promise<RawSocket> {
  const w = ws();
  await w.next();
  w.send('40');
  await w.next();
  await w.next();
  return w;
}

t.test('engine.io / handshake / polling: opens a session', async (t) => {
  const r = await fetch(`${BASE}?EIO=4&transport=polling`);
  t.equal(r.status, 200);
  const content = await r.text();
  t.equal(content[0], '0');
  const v = JSON.parse(content.substring(1));
  t.same(Object.keys(v).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
  t.type(v.sid, 'string');
  t.same(v.upgrades, ['websocket']);
  t.same([v.pingInterval, v.pingTimeout, v.maxPayload], [PING_INTERVAL, PING_TIMEOUT, 1000000]);
});

t.test("engine.io / handshake / polling: an invalid 'EIO' query parameter is a 400", async (t) => {
  t.equal((await fetch(`${BASE}?transport=polling`)).status, 400);
  t.equal((await fetch(`${BASE}?EIO=abc&transport=polling`)).status, 400);
});

t.test("engine.io / handshake / polling: an invalid 'transport' query parameter is a 400", async (t) => {
  t.equal((await fetch(`${BASE}?EIO=4`)).status, 400);
  t.equal((await fetch(`${BASE}?EIO=4&transport=abc`)).status, 400);
});

t.test('engine.io / handshake / polling: an invalid request method is a 400', async (t) => {
  t.equal((await fetch(`${BASE}?EIO=4&transport=polling`, { method: 'POST' })).status, 400);
  const put = await fetch(`${BASE}?EIO=4&transport=polling`, { method: 'PUT' });
  t.equal(put.status, 400);
  t.same(await put.json(), { code: 2, message: 'Bad handshake method' });
});

t.test('engine.io / handshake / websocket: opens a session', async (t) => {
  const w = ws();
  const data = (await w.next()) as string;
  t.equal(data[0], '0');
  const v = JSON.parse(data.substring(1));
  t.same(Object.keys(v).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
  t.same(v.upgrades, []);
  t.same([v.pingInterval, v.pingTimeout, v.maxPayload], [PING_INTERVAL, PING_TIMEOUT, 1000000]);
});

t.test("engine.io / handshake / websocket: an invalid 'EIO' query parameter closes the socket", async (t) => {
  for (const q of ['transport=websocket', 'EIO=abc&transport=websocket']) {
    const w = ws(q);
    await w.waitClose();
    t.equal(w.refusedWith, 400, q);
  }
});

t.test("engine.io / handshake / websocket: an invalid 'transport' query parameter closes the socket", async (t) => {
  for (const q of ['EIO=4', 'EIO=4&transport=abc']) {
    const w = ws(q);
    await w.waitClose();
    t.equal(w.refusedWith, 400, q);
  }
});

t.test('engine.io / heartbeat / polling: ping and pong', async (t) => {
  const sid = await openPolling();
  for (let i = 0; i < 3; i++) {
    const g = await get(`EIO=4&transport=polling&sid=${sid}`);
    t.same([g.status, g.text], [200, '2'], `ping ${i}`);
    t.equal((await post(`EIO=4&transport=polling&sid=${sid}`, '3')).status, 200, `pong ${i}`);
  }
});

t.test('engine.io / heartbeat / polling: the session closes upon ping timeout', async (t) => {
  // Time is the check here: pingInterval + pingTimeout after the handshake the session is gone. Waited
  // on the clock, not with one timer: a timer can fire early by the age of the event loop's cached
  // time, and the server's deadline was set before its handshake answer left.
  const sid = await openPolling();
  const opened = performance.now();
  while (performance.now() - opened <= PING_INTERVAL + PING_TIMEOUT + 5) await sleep(5);
  t.equal((await get(`EIO=4&transport=polling&sid=${sid}`)).status, 400);
});

t.test('engine.io / heartbeat / websocket: ping and pong', async (t) => {
  const w = ws();
  await w.next();
  for (let i = 0; i < 3; i++) {
    t.equal(await w.next(), '2', `ping ${i}`);
    w.send('3');
  }
});

t.test('engine.io / heartbeat / websocket: the session closes upon ping timeout', async (t) => {
  const w = ws();
  await w.waitClose();
  t.ok(w.closed);
});

t.test('engine.io / close / polling: a close packet ends the session; the held poll gets a noop', async (t) => {
  for (let i = 0; i < ROUNDS * 2; i++) {
    const sid = await openPolling();
    const [g] = await Promise.all([get(`EIO=4&transport=polling&sid=${sid}`), post(`EIO=4&transport=polling&sid=${sid}`, '1')]);
    t.same([g.status, g.text], [200, '6'], `round ${i}`);
    t.equal((await get(`EIO=4&transport=polling&sid=${sid}`)).status, 400, `round ${i}: then gone`);
  }
  const sid = await openPolling();
  const [g] = await Promise.all([fetch(`${BASE}?EIO=4&transport=polling&sid=${sid}`), fetch(`${BASE}?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '1' })]);
  t.same([g.status, await g.text()], [200, '6'], 'with fetch');
  t.equal((await fetch(`${BASE}?EIO=4&transport=polling&sid=${sid}`)).status, 400);
});

t.test('engine.io / close / websocket: a close packet ends the session', async (t) => {
  const w = ws();
  await w.next();
  w.send('1');
  await w.waitClose();
  t.ok(w.closed);
});

t.test('engine.io / upgrade: polling to websocket', async (t) => {
  for (let i = 0; i < ROUNDS; i++) {
    const sid = await openPolling();
    const w = ws(`EIO=4&transport=websocket&sid=${sid}`);
    await w.opened;
    w.send('2probe');
    t.equal(await w.next(), '3probe', `round ${i}`);
    w.send('5');
    w.send('40');
    t.match(await w.next({ skipPings: true }), /^40\{"sid":/, `round ${i}: the session works over the WebSocket`);
    w.close();
  }
});

t.test('engine.io / upgrade: HTTP requests with the sid of an upgraded session are a 400', async (t) => {
  for (let i = 0; i < ROUNDS; i++) {
    const sid = await openPolling();
    const w = ws(`EIO=4&transport=websocket&sid=${sid}`);
    await w.opened;
    w.send('2probe');
    w.send('5');
    t.equal((await get(`EIO=4&transport=polling&sid=${sid}`)).status, 400, `round ${i}`);
    w.close();
  }
});

t.test('engine.io / upgrade: a WebSocket with the sid of an upgraded session is accepted, then closed', async (t) => {
  for (let i = 0; i < ROUNDS; i++) {
    const sid = await openPolling();
    const w = ws(`EIO=4&transport=websocket&sid=${sid}`);
    await w.opened;
    w.send('2probe');
    w.send('5');
    const w2 = ws(`EIO=4&transport=websocket&sid=${sid}`);
    await w2.waitClose();
    t.equal(w2.refusedWith, undefined, `round ${i}: accepted, then closed`);
    w.close();
  }
});

t.test('socket.io / connect: to the main namespace', async (t) => {
  const w = ws();
  await w.next();
  w.send('40');
  const data = (await w.next()) as string;
  t.equal(data.slice(0, 2), '40');
  const hs = JSON.parse(data.substring(2));
  t.same(Object.keys(hs), ['sid']);
  t.type(hs.sid, 'string');
  t.equal(await w.next(), '42["auth",{}]', 'the onConnect emit follows the CONNECT packet');
});

t.test('socket.io / connect: to the main namespace with a payload', async (t) => {
  const w = ws();
  await w.next();
  w.send('40{"token":"123"}');
  const data = (await w.next()) as string;
  t.equal(data.slice(0, 2), '40');
  t.same(Object.keys(JSON.parse(data.substring(2))), ['sid']);
  t.equal(await w.next(), '42["auth",{"token":"123"}]', 'the payload reaches the handler untouched');
});

t.test('socket.io / connect: to a custom namespace', async (t) => {
  const w = ws();
  await w.next();
  w.send('40/custom,');
  const data = (await w.next()) as string;
  t.equal(data.slice(0, 10), '40/custom,');
  t.same(Object.keys(JSON.parse(data.substring(10))), ['sid']);
  t.equal(await w.next(), '42/custom,["auth",{}]');
});

t.test('socket.io / connect: to a custom namespace with a payload', async (t) => {
  const w = ws();
  await w.next();
  w.send('40/custom,{"token":"abc"}');
  const data = (await w.next()) as string;
  t.equal(data.slice(0, 10), '40/custom,');
  t.equal(await w.next(), '42/custom,["auth",{"token":"abc"}]');
});

t.test('socket.io / connect: an unknown namespace is refused', async (t) => {
  const w = ws();
  await w.next();
  w.send('40/random');
  t.equal(await w.next(), '44/random,{"message":"Invalid namespace"}');
});

t.test('socket.io / connect: an invalid handshake closes the connection', async (t) => {
  const w = ws();
  await w.next();
  w.send('4abc');
  await w.waitClose();
  t.ok(w.closed);
});

t.test('socket.io / connect: no namespace joined within the connect timeout closes the connection', async (t) => {
  const w = ws();
  t.equal(((await w.next()) as string)[0], '0');
  w.send('3'); // keep the heartbeat out of the way: only the connect timeout can close it
  await w.waitClose(4000);
  t.ok(w.closed);
});

t.test('socket.io / disconnect: from the main namespace (the Engine.IO session stays)', async (t) => {
  const w = await connected();
  w.send('41');
  t.equal(await w.next(), '2', 'the next thing is a ping: the session is still open');
});

t.test('socket.io / disconnect: connect then disconnect a custom namespace', async (t) => {
  const w = await connected();
  t.equal(await w.next(), '2');
  w.send('3');
  w.send('40/custom');
  t.match(await w.next(), /^40\/custom,/);
  t.equal(await w.next(), '42/custom,["auth",{}]');
  w.send('41/custom');
  w.send('42["message","message to main namespace"]');
  t.equal(await w.next({ skipPings: true }), '42["message-back","message to main namespace"]');
});

t.test('socket.io / message: a plain-text packet', async (t) => {
  const w = await connected();
  w.send('42["message",1,"2",{"3":[true]}]');
  t.equal(await w.next({ skipPings: true }), '42["message-back",1,"2",{"3":[true]}]');
});

t.test('socket.io / message: a packet with binary attachments', async (t) => {
  const w = await connected();
  w.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
  w.send(Uint8Array.from([1, 2, 3]));
  w.send(Uint8Array.from([4, 5, 6]));
  t.equal(await w.next({ skipPings: true }), '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
  t.same([...((await w.next({ skipPings: true })) as Buffer)], [1, 2, 3]);
  t.same([...((await w.next({ skipPings: true })) as Buffer)], [4, 5, 6]);
});

t.test('socket.io / message: a plain-text packet with an ack (several ack arguments)', async (t) => {
  const w = await connected();
  w.send('42456["message-with-ack",1,"2",{"3":[false]}]');
  t.equal(await w.next({ skipPings: true }), '43456[1,"2",{"3":[false]}]');
});

t.test('socket.io / message: a packet with binary attachments and an ack', async (t) => {
  const w = await connected();
  w.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
  w.send(Uint8Array.from([1, 2, 3]));
  w.send(Uint8Array.from([4, 5, 6]));
  t.equal(await w.next({ skipPings: true }), '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
  t.same([...((await w.next({ skipPings: true })) as Buffer)], [1, 2, 3]);
  t.same([...((await w.next({ skipPings: true })) as Buffer)], [4, 5, 6]);
});

t.test('socket.io / message: an unknown packet type closes the connection', async (t) => {
  const w = await connected();
  w.send('4abc');
  await w.waitClose();
  t.ok(w.closed);
});

t.test('socket.io / message: an invalid payload closes the connection', async (t) => {
  const w = await connected();
  w.send('42{}');
  await w.waitClose();
  t.ok(w.closed);
});

t.test('socket.io / message: an invalid ack id closes the connection', async (t) => {
  const w = await connected();
  w.send('42abc["message-with-ack",1,"2",{"3":[false]}]');
  await w.waitClose();
  t.ok(w.closed);
});

t.test('Connection: close is answered with Connection: close', async (t) => {
  const r = await request('GET', `${BASE}?EIO=4&transport=polling`, undefined, { connection: 'close' });
  t.equal(r.status, 200);
  t.equal(r.headers.connection, 'close');
  const connectionHeaders = (a: { rawHeaders: string[] }) => a.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'connection').length;
  t.equal(connectionHeaders(r), 1, 'one Connection header');
  const refused = await request('GET', `${BASE}?EIO=3&transport=polling`);
  t.equal(refused.status, 400);
  t.equal(connectionHeaders(refused), 1, 'one Connection header on an error answer');
});

t.test('a server offering WebSocket only answers a polling request "Transport unknown", as engine.io does', async (t) => {
  const ws = await startServer(t, { socketioTransports: ['websocket'] });
  for (const q of ['EIO=4&transport=polling', 'EIO=4&transport=polling&sid=abc']) {
    const r = await request('GET', `${ws.http}/socket.io/?${q}`);
    t.equal(r.status, 400, q);
    t.same(r.json, { code: 0, message: 'Transport unknown' }, q);
  }
});
