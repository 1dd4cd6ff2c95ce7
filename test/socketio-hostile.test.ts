// The Socket.IO gateway under bad input and limits: malformed Engine.IO / Socket.IO packets, bad sids,
// oversized bodies and frames, attachment mismatches, heartbeats, CORS. None of it may crash a shard.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { io } from 'socket.io-client';
import { http, nextEvent, rawHandshake, RawWs, sioConnect } from './helpers/sio.js';

const s = await startServer(t, {
  socketioPingInterval: '150ms',
  socketioPingTimeout: '300ms',
  socketioMaxHttpBufferSize: '2kb',
  allowedOrigins: 'http://allowed.example',
  rateLimit: 20,
  rateBurst: 20,
  maxWhisperSize: '1kb',
  jwtSecret: JWT_SECRET,
});
const base = `${s.http}/socket.io/`;

t.test('requests the protocol refuses get its HTTP errors', async (t) => {
  const err = async (url: string, init: Parameters<typeof http>[1], status: number, code: number, name: string) => {
    const r = await http(url, init);
    t.equal(r.status, status, `${name}: HTTP ${status}`);
    t.equal(JSON.parse(r.body).code, code, `${name}: code ${code}`);
  };
  await err(`${base}?transport=polling`, {}, 400, 5, 'no EIO');
  await err(`${base}?EIO=3&transport=polling`, {}, 400, 5, 'EIO=3');
  await err(`${base}?EIO=4&transport=flash`, {}, 400, 0, 'unknown transport');
  await err(`${base}?EIO=4`, {}, 400, 0, 'no transport');
  await err(`${base}?EIO=4&transport=polling`, { method: 'POST', body: '40' }, 400, 2, 'handshake by POST');
  await err(`${base}?EIO=4&transport=polling&sid=nonsense`, {}, 400, 1, 'sid naming no shard');
  await err(`${base}?EIO=4&transport=polling&sid=7.abc`, {}, 400, 1, 'sid of a shard that does not exist');
  await err(`${base}?EIO=4&transport=polling&sid=0.abc`, {}, 400, 1, 'unknown sid on shard 0');
  await err(`${base}?EIO=4&transport=polling&sid=1.abc`, { method: 'POST', body: '40' }, 400, 1, 'unknown sid on shard 1');
  await err(`${base}?EIO=4&transport=polling&sid=${'9'.repeat(100)}`, {}, 400, 1, 'absurd sid');
  await err(`${base}?EIO=4&transport=polling`, { headers: { origin: 'http://evil.example' } }, 403, 4, 'origin not allowed');
  // Asked on the thread that would hold it: 400 when that is the thread the connection landed on;
  // otherwise the upgrade is completed at once (see the engine) and the socket closed with the reason.
  const ws = new RawWs(`${s.url}/socket.io/?EIO=4&transport=websocket&sid=0.nope`);
  const refusal = await ws.opened().then(() => ws.waitClose().then((c) => `close ${c.code} ${c.reason}`), (err: Error) => err.message);
  t.match(refusal, /HTTP 400|close 1008 Session ID unknown/, 'WebSocket upgrade of an unknown sid: 400, or closed as unknown');
  const ws2 = new RawWs(`${s.url}/socket.io/?EIO=3&transport=websocket`);
  await t.rejects(ws2.opened(), /HTTP 400/, 'WebSocket with EIO=3: 400');
});

t.test('malformed polling payloads close the session with 400', async (t) => {
  const cases: Array<[string, string]> = [
    ['garbage engine packet', 'x'],
    ['empty packet between separators', '40\x1e\x1e42["a"]'],
    ['bad base64 binary', 'b!!!!'],
    ['invalid socket.io packet', '4garbage'],
    ['invalid JSON in an event', '42["a",{]'],
    ['event for a namespace never joined', '42/nowhere,["x"]'],
    ['attachment placeholder out of range', '40\x1e451-["x",{"_placeholder":true,"num":3}]'],
    ['text where an attachment is due', '40\x1e451-["x",{"_placeholder":true,"num":0}]\x1e42["y"]'],
    ['binary with nothing pending', '40\x1ebAQID'],
    ['reserved event name', '40\x1e42["connect"]'],
    ['too many attachments announced', '40\x1e4599-["x"]'],
    ['upgrade packet over polling', '5'],
  ];
  for (const [name, body] of cases) {
    const hs = await rawHandshake(s.http);
    const url = `${base}?EIO=4&transport=polling&sid=${hs.sid}`;
    const r = await http(url, { method: 'POST', body });
    // A bad Socket.IO packet inside a valid Engine.IO payload is accepted by Engine.IO ("ok") and then
    // ends the session; a bad Engine.IO payload is refused outright (400).
    t.ok(r.status === 400 || r.body === 'ok', `${name}: answered (${r.status})`);
    const after = await http(url);
    t.ok(after.status === 400 || /(^|\x1e)1$/.test(after.body), `${name}: session closed (${after.status} ${JSON.stringify(after.body)})`);
  }
  t.equal((await api(s.http, '/health', undefined, { key: null })).body.workers.alive, 2, 'both shards alive');
});

t.test('a polling session ended for its event rate first delivers the answers to what it sent, then the close', async (t) => {
  const own = await startServer(t, { rateLimit: 20, rateBurst: 10 });
  const hs = await rawHandshake(own.http);
  const url = `${own.http}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`;
  t.equal((await http(url, { method: 'POST', body: '40' })).body, 'ok');
  t.match((await http(url)).body, /^40\{"sid"/, 'connected');
  const flood = Array.from({ length: 100 }, (_, i) => `42${i}["unsubscribe",{"channel":"c${i}"}]`).join('\x1e');
  t.equal((await http(url, { method: 'POST', body: flood })).body, 'ok', 'the flood is taken');
  const packets: string[] = [];
  for (let i = 0; i < 10 && packets.at(-1) !== '1'; i++) {
    const r = await http(url);
    t.equal(r.status, 200, `poll ${i}: 200`);
    packets.push(...r.body.split('\x1e'));
  }
  t.equal(packets.at(-1), '1', 'the session ends with the close packet');
  const acks = packets.slice(0, -1).map((p) => /^43(\d+)\[(.*)\]$/.exec(p)).filter((m) => m !== null);
  t.equal(acks.length, packets.length - 1, 'everything before it is an ack');
  t.same(acks.map((m) => Number(m![1])), acks.map((_, i) => i), 'the acks of the first events, in order, none missing');
  const codes = acks.map((m) => JSON.parse(m![2]!).error?.code);
  t.ok(codes.includes('not_subscribed') && codes.includes('rate_limited'), 'answered: those run, then those refused');
  t.ok(acks.length >= 59, `${acks.length} answers: the allowed ones (a burst of 10) and 49 refusals before the 50th ends it`);
  t.equal((await http(url)).status, 400, 'then the session is gone');
});

t.test('two polls at once end the session; the first gets the close packet', async (t) => {
  const hs = await rawHandshake(s.http);
  const url = `${base}?EIO=4&transport=polling&sid=${hs.sid}`;
  const first = http(url);
  await new Promise((r) => setTimeout(r, 50));
  const second = await http(url);
  t.equal(second.status, 400, 'overlapping GET refused');
  t.match((await first).body, /(^|\x1e)1$/, 'the held GET ends with a close packet');
  t.equal((await http(url)).status, 400, 'session gone');
});

t.test('oversized bodies and frames: 413 / close, the limit announced as maxPayload', async (t) => {
  const hs = await rawHandshake(s.http);
  t.equal(hs.maxPayload, 2048, 'maxPayload = socketioMaxHttpBufferSize');
  const url = `${base}?EIO=4&transport=polling&sid=${hs.sid}`;
  const big = await http(url, { method: 'POST', body: '4' + 'x'.repeat(4000) });
  t.equal(big.status, 413, 'polling body over the limit: 413');
  const after = await http(url);
  t.ok(after.status === 400 || /(^|\x1e)1$/.test(after.body), 'and the session is closed');

  const ws = new RawWs(`${s.url}/socket.io/?EIO=4&transport=websocket`);
  await ws.opened();
  t.match(await ws.next(), /^0\{"sid"/);
  ws.send('4' + 'y'.repeat(5000));
  const closed = await ws.waitClose();
  t.equal(closed.code, 1009, 'WebSocket frame over the limit: closed with 1009, as socket.io closes it');
  t.match(closed.reason, /over maxHttpBufferSize \(2048 bytes\)/, 'saying why');
  const huge = new RawWs(`${s.url}/socket.io/?EIO=4&transport=websocket`);
  await huge.opened();
  t.match(await huge.next(), /^0\{"sid"/);
  huge.send('4' + 'y'.repeat(100_000));
  t.ok((await huge.waitClose()).code >= 1000, 'one far over it is cut by uWS itself');

  const c = await sioConnect(t, s.http, { transports: ['websocket'] });
  const dropped = nextEvent(c, 'disconnect');
  c.emit('big', 'z'.repeat(5000));
  t.equal((await dropped)[0], 'transport close', 'socket.io-client sending too much is disconnected');
});

t.test('WebSocket: bad frames close it, heartbeats keep good clients and drop silent ones', async (t) => {
  for (const [name, frame] of [['garbage', 'zz'], ['binary without a pending packet', Buffer.from([1, 2])], ['bad socket.io packet', '4{'], ['attachment mismatch', '451-["x",{"_placeholder":true,"num":0}]']] as Array<[string, string | Buffer]>) {
    const ws = new RawWs(`${s.url}/socket.io/?EIO=4&transport=websocket`);
    await ws.opened();
    await ws.next((m) => String(m).startsWith('0'));
    ws.send('40');
    t.match(await ws.next((m) => String(m).startsWith('40')), /^40\{"sid":/);
    ws.send(frame);
    if (name === 'attachment mismatch') ws.send('42["next"]');
    t.ok((await ws.waitClose()).code > 0, `${name}: closed`);
  }

  const silent = new RawWs(`${s.url}/socket.io/?EIO=4&transport=websocket`);
  await silent.opened();
  const open = JSON.parse(String(await silent.next()).slice(1));
  t.match(open, { pingInterval: 150, pingTimeout: 300, upgrades: [] });
  t.equal(await silent.next((m) => m === '2'), '2', 'the server pings');
  await silent.waitClose(5000);
  t.pass('a client that never answers pings is closed');

  const c = await sioConnect(t, s.http, { transports: ['websocket'] });
  let pings = 0;
  c.io.engine.on('ping', () => pings++);
  while (pings < 4) await nextEvent(c.io.engine as never, 'ping');
  t.equal(c.connected, true, 'a live client stays connected through several heartbeats');
  const p = await sioConnect(t, s.http, { transports: ['polling'] });
  let ppings = 0;
  p.io.engine.on('ping', () => ppings++);
  while (ppings < 4) await nextEvent(p.io.engine as never, 'ping');
  t.equal(p.connected, true, 'also over polling');
  t.same(await p.emitWithAck('subscribe', { channel: 'hb' }), { ok: true });
});

t.test('CORS: allowed origins get the headers, others are refused, preflight answered', async (t) => {
  const ok = await http(`${base}?EIO=4&transport=polling`, { headers: { origin: 'http://allowed.example' } });
  t.equal(ok.status, 200);
  t.equal(ok.headers.get('access-control-allow-origin'), 'http://allowed.example');
  t.equal(ok.headers.get('access-control-allow-credentials'), 'true');
  const same = await http(`${base}?EIO=4&transport=polling`, { headers: { origin: s.http } });
  t.equal(same.status, 200, 'same origin always allowed');
  const pre = await http(`${base}?EIO=4&transport=polling`, { method: 'OPTIONS', headers: { origin: 'http://allowed.example', 'access-control-request-headers': 'content-type' } });
  t.equal(pre.status, 204);
  t.match(pre.headers.get('access-control-allow-methods'), /POST/);
  const evilWs = new RawWs(`${s.url}/socket.io/?EIO=4&transport=websocket`);
  evilWs.ws.close();
  const { default: WebSocket } = await import('ws');
  const refused = await new Promise<number>((resolve) => {
    const w = new WebSocket(`${s.url}/socket.io/?EIO=4&transport=websocket`, { headers: { origin: 'http://evil.example' } });
    w.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    w.on('open', () => resolve(101));
    w.on('error', () => {});
  });
  t.equal(refused, 403, 'WebSocket from a foreign origin refused');
  t.equal((await api(s.http, '/health', undefined, { key: null })).body.workers.alive, 2, 'both shards still alive');
});

t.test('limits: event rate, whisper size, connections per IP, requireAuth', async (t) => {
  const c = await sioConnect(t, s.http, { transports: ['websocket'], auth: { token: signJwt({ sub: 'w', channels: ['private-*'] }, { secret: JWT_SECRET }) } });
  t.same(await c.emitWithAck('subscribe', { channel: 'private-w' }), { ok: true });
  t.match(await c.emitWithAck('client event', { channel: 'private-w', event: 'client-big', data: 'x'.repeat(1500) }), { ok: false, error: { code: 'payload_too_large' } }, 'whisper over --max-whisper-size refused');
  t.same(await c.emitWithAck('client event', { channel: 'private-w', event: 'client-small', data: 'ok' }), { ok: true });
  const answers = await Promise.all(Array.from({ length: 60 }, () => c.emitWithAck('unsubscribe', { channel: 'nothing' })));
  const limited = answers.filter((a) => a.error?.code === 'rate_limited').length;
  t.ok(limited > 0 && limited < 60, `a flood of events is rate limited (${limited} of 60 refused)`);
  t.equal(c.connected, true, 'but the connection stays until it keeps going');

  const tight = await startServer(t, { maxConnectionsPerIp: 2, requireAuth: true });
  const tok = signJwt({ sub: 'u' }, { secret: JWT_SECRET });
  const anon = io(tight.http, { transports: ['websocket'], reconnection: false, forceNew: true });
  const [refusal] = await nextEvent(anon, 'connect_error');
  t.same(refusal.data, { code: 'unauthorized' }, '--require-auth: no token, no connect');
  anon.close();
  // its Engine.IO session ends with it and gives its place back
  let free = false;
  for (let i = 0; i < 50 && !free; i++) {
    const probe = await http(`${tight.http}/socket.io/?EIO=4&transport=polling`);
    free = probe.status === 200;
    if (free) await http(`${tight.http}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(JSON.parse(probe.body.slice(1)).sid)}`, { method: 'POST', body: '1' });
    else await new Promise((r) => setTimeout(r, 50));
  }
  const a = await sioConnect(t, tight.http, { transports: ['websocket'], auth: { token: tok } });
  const b = await sioConnect(t, tight.http, { transports: ['polling'], auth: { token: tok } });
  const third = await http(`${tight.http}/socket.io/?EIO=4&transport=polling`);
  t.equal(third.status, 429, 'a third connection from the same IP is refused');
  a.close();
  b.close();
  let ok = false;
  for (let i = 0; i < 50 && !ok; i++) {
    ok = (await http(`${tight.http}/socket.io/?EIO=4&transport=polling`)).status === 200;
    if (!ok) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(ok, 'closed sessions give their places back');
});
