// A Socket.IO polling session is a slow consumer when what already waits for it passes the limit
// (max(--max-backpressure, --socketio-max-http-buffer-size)), as on /poll, SSE and WebSockets, not
// when one write does: a publication (or a handler's reply, a recovery's replay) larger than the limit
// reaches a client that is fetching. Before, it closed the session instead, so the reply never came.
import t from 'tap';
import { startServer, api } from './helpers/server.js';
import { http, nextEvent, rawHandshake, sioConnect } from './helpers/sio.js';

const LIMIT = 64 * 1024;
const s = await startServer(t, { maxBackpressure: LIMIT, socketioMaxHttpBufferSize: 16 * 1024, maxPayload: 4 * LIMIT, socketioRecovery: 0 });

t.test('one publication larger than the limit reaches a polling client, which stays connected', async (t) => {
  const c = await sioConnect(t, s.http, { transports: ['polling'] });
  t.same(await c.emitWithAck('subscribe', { channel: 'big' }), { ok: true });
  const got = nextEvent(c, 'e');
  const big = 'x'.repeat(2 * LIMIT);
  t.equal((await api(s.http, '/api/publish', { channel: 'big', event: 'e', data: big })).status, 200);
  const [channel, data] = await got;
  t.equal(channel, 'big');
  t.equal(data.length, big.length, 'the whole publication arrived');
  const after = nextEvent(c, 'e');
  await api(s.http, '/api/publish', { channel: 'big', event: 'e', data: 'small' });
  t.same(await after, ['big', 'small'], 'the session goes on');
  t.equal(c.connected, true);
});

t.test('a polling session that does not fetch is still closed once its backlog passes the limit', async (t) => {
  const hs = await rawHandshake(s.http);
  const url = `${s.http}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`;
  t.equal((await http(url, { method: 'POST', body: '40' })).body, 'ok');
  t.match((await http(url)).body, /^40\{"sid"/, 'connected');
  t.equal((await http(url, { method: 'POST', body: '421["subscribe",{"channel":"stalled"}]' })).body, 'ok');
  t.match((await http(url)).body, /^431\[\{"ok":true\}\]$/, 'subscribed');
  // No GET from here on: publish until the server gives the session up (the channel loses it).
  let sent = 0;
  for (; sent < 50; sent++) {
    await api(s.http, '/api/publish', { channel: 'stalled', event: 'e', data: 'y'.repeat(LIMIT / 2) });
    if ((await api(s.http, '/api/channels/stalled')).body.subscribers === 0) break;
  }
  t.ok(sent < 50, `closed as a slow consumer after ${sent + 1} publications`);
  const r = await http(url);
  t.ok(r.status === 400 || /(^|\x1e)1$/.test(r.body), 'the session is gone');
});
