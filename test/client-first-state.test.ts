// The client's first connection attempt, as the docs' snippet uses it: listeners added right after
// `new RtClient(...)` (autoConnect) see the first 'connecting'.
import t from 'tap';
import WebSocket from 'ws';
import { RtClient } from 'rt-actors/client';
import { startServer, api } from './helpers/server.js';
import { eventually } from './helpers/http-stream.js';

const opts = { WebSocket, transports: ['websocket' as const], rememberTransport: false };

t.test('listeners added after new RtClient() see the first connecting', async (t) => {
  const s = await startServer(t);
  const c = new RtClient(s.http, opts);
  t.teardown(() => c.disconnect());
  const states: string[] = [];
  let connectingEvents = 0;
  c.on('state', (e) => states.push(e.state));
  c.on('connecting', () => connectingEvents++);
  await eventually(() => c.state === 'connected', 'connected');
  t.same(states, ['connecting', 'connected']);
  t.equal(connectingEvents, 1);
});

t.test('a client disconnected at once never connects; one used at once works', async (t) => {
  const s = await startServer(t);
  const gone = new RtClient(s.http, opts);
  gone.disconnect();
  const used = new RtClient(s.http, opts);
  t.teardown(() => used.disconnect());
  const got: unknown[] = [];
  const ch = used.channel('first-state').listen('e', (d) => got.push(d));
  const subscribed = new Promise((r) => ch.subscribed(r));
  await eventually(() => used.state === 'connected', 'connected');
  await subscribed;
  await api(s.http, '/api/publish', { channel: 'first-state', event: 'e', data: 1 });
  await eventually(() => got.length === 1, 'message');
  t.equal(gone.state, 'disconnected');
  const stats = await api(s.http, '/api/stats');
  t.equal(stats.body.connections.total, 1, 'only the used client is connected');
});
