// --client-publish=none is documented as "nobody may publish from a client". Socket.IO / Echo
// whispers and Pusher client events went through all the same (only the native `publish` was
// refused): a server set up so that clients cannot send anything to each other still relayed their
// client-… events on private and presence channels.
import t from 'tap';
import { io } from 'socket.io-client';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { pusherClient, pusherOptions, subscribed } from './helpers/pusher.js';

const token = (sub: string) => signJwt({ sub, channels: ['private-*'], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });

t.test('--client-publish=none refuses whispers and Pusher client events', async (t) => {
  const s = await startServer(t, { ...pusherOptions(), clientPublish: 'none' });
  const reader = await TestClient.connect(`${s.url}/ws?token=${token('reader')}`);
  t.teardown(() => reader.close());
  t.equal((await reader.request({ op: 'subscribe', channel: 'private-room' })).ok, true);

  const sock = io(s.http, { transports: ['websocket'], auth: { token: token('sio') }, reconnection: false });
  t.teardown(() => sock.close());
  t.same(await sock.emitWithAck('subscribe', { channel: 'private-room' }), { ok: true });
  const whisper = await sock.emitWithAck('client event', { channel: 'private-room', event: 'client-typing', data: { from: 'sio' } });
  t.equal(whisper.ok, false, 'Socket.IO whisper refused');
  t.equal(whisper.error?.code, 'publish_refused');

  const p = pusherClient(t, s.port);
  const { channel } = await subscribed(p, 'private-room');
  const pusherError = new Promise<any>((resolve) => p.connection.bind('error', (e: any) => resolve(JSON.stringify(e))));
  channel.trigger('client-typing', { from: 'pusher' });
  t.match(await pusherError, /client publish policy: none/, 'Pusher client event answered pusher:error');

  const native = await reader.request({ op: 'publish', channel: 'private-room', event: 'client-typing', data: { from: 'ws' } });
  t.equal(native.error?.code, 'publish_refused', 'native publish refused, as before');

  // The backend still publishes; by the time its sentinel arrives nothing else may have.
  t.equal((await api(s.http, '/api/publish', { channel: 'private-room', event: 'sentinel', data: 1 })).status, 200);
  const got = await reader.waitForMessages('private-room', 1);
  t.same(got.map((m) => m.event), ['sentinel'], 'the reader got the backend publish and no client event');
});

t.test('the default (private) still lets whispers through', async (t) => {
  const s = await startServer(t, { ...pusherOptions() });
  const reader = await TestClient.connect(`${s.url}/ws?token=${token('reader')}`);
  t.teardown(() => reader.close());
  await reader.request({ op: 'subscribe', channel: 'private-room' });
  const sock = io(s.http, { transports: ['websocket'], auth: { token: token('sio') }, reconnection: false });
  t.teardown(() => sock.close());
  await sock.emitWithAck('subscribe', { channel: 'private-room' });
  t.same(await sock.emitWithAck('client event', { channel: 'private-room', event: 'client-typing', data: 1 }), { ok: true });
  t.same((await reader.waitForMessages('private-room', 1)).map((m) => m.event), ['client-typing']);
});
