// POST /api/users/:id/disconnect reaches a user wherever they are, also where a connection is that user
// on one channel only: a Socket.IO subscribe authorized with the user's token in auth.headers (laravel-
// echo's way) on a connection that is anonymous or someone else. Before, such a connection kept the
// revoked user's private channels and stayed in presence as them, and a saved Socket.IO session was
// resumed with them.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET, startServer } from './helpers/server.js';
import { nextEvent, sioConnect } from './helpers/sio.js';
import { eventually } from './helpers/http-stream.js';
import { io } from 'socket.io-client';
import { createHmac } from 'node:crypto';
import { APP, pusherOptions, RawPusher } from './helpers/pusher.js';

const token = (sub: string, channels: string[]): string => signJwt({ sub, channels, exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });
const bearer = (tok: string) => ({ headers: { Authorization: `Bearer ${tok}` } });

t.test('a user revoked through the API loses the subscriptions their token authorized on other connections', async (t) => {
  const s = await startServer(t);
  // Each case revokes its own user: a revocation refuses the user's tokens issued up to that second.
  for (const [who, user, connectAuth] of [['an anonymous connection', 'bob', {}], ["alice's connection", 'carol', { token: token('alice', []) }]] as const) {
    const tok = token(user, [`private-${user}`, 'presence-room']);
    const c = await sioConnect(t, s.http, { transports: ['websocket'], auth: connectAuth });
    t.same(await c.emitWithAck('subscribe', { channel: `private-${user}`, auth: bearer(tok) }), { ok: true }, `${who}: private channel with ${user}'s token`);
    t.same(await c.emitWithAck('subscribe', { channel: 'presence-room', auth: bearer(tok) }), { ok: true }, `${who}: presence as ${user}`);
    t.same((await api(s.http, '/api/channels/presence-room/users')).body, { users: [{ user_id: user }] }, `${who}: ${user} is present`);

    const gone = nextEvent(c, 'disconnect');
    t.equal((await api(s.http, `/api/users/${user}/disconnect`, {})).status, 200, `${who}: ${user} disconnected through the API`);
    t.equal((await gone)[0], 'io server disconnect', `${who}: disconnected with ${user}, told not to reconnect`);
    // The leave reaches the channel's owner after the close: poll with a deadline.
    const left = await eventually(async () => ((await api(s.http, '/api/channels/presence-room/users')).body.users.length === 0 ? true : undefined), `${user} to leave presence-room`);
    t.ok(left, `${who}: ${user} left the presence channel`);
  }
});

t.test('a saved Socket.IO session is not resumed with the channels of a user revoked while it was away', async (t) => {
  const s = await startServer(t);
  const dave = token('dave', ['private-dave']);
  const c = io(s.http, { forceNew: true, transports: ['websocket'], reconnection: false, timeout: 5000 });
  t.teardown(() => c.close());
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  t.same(await c.emitWithAck('subscribe', { channel: 'private-dave', auth: bearer(dave) }), { ok: true }, "an anonymous socket in private-dave with dave's token");
  t.same(await c.emitWithAck('subscribe', { channel: 'news' }), { ok: true }, 'and in a public channel');

  const gone = nextEvent(c, 'disconnect');
  c.io.engine.close();
  await gone;
  await eventually(async () => ((await api(s.http, '/api/channels/private-dave')).body.subscribers === 0 ? true : undefined), 'the server to notice the drop');
  t.equal((await api(s.http, '/api/users/dave/disconnect', {})).status, 200, 'dave revoked while the socket is away');

  const got: unknown[][] = [];
  c.onAny((...a) => got.push(a));
  const back = nextEvent(c, 'connect');
  c.connect();
  await back;
  t.equal(c.recovered, false, 'the reconnect is a fresh socket, as for a session of a revoked user');
  await api(s.http, '/api/publish', { channel: 'private-dave', event: 'secret', data: 1 });
  await api(s.http, '/api/publish', { channel: 'news', event: 'sentinel', data: 2 });
  if (c.recovered) await eventually(() => got.some((a) => a[0] === 'sentinel') || undefined, 'the sentinel on news');
  t.notOk(got.some((a) => a[0] === 'secret'), "no publication of dave's private channel reaches it");
  t.equal((await api(s.http, '/api/channels/private-dave')).body.subscribers, 0, 'not subscribed to private-dave again');
});

t.test('a Pusher connection that is in a presence channel as the user (channel_data) is disconnected with them', async (t) => {
  const s = await startServer(t, pusherOptions());
  const c = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  const socketId = JSON.parse((await c.event('pusher:connection_established')).data).socket_id;
  const channelData = JSON.stringify({ user_id: 'erin' });
  const auth = `${APP.key}:${createHmac('sha256', APP.secret).update(`${socketId}:presence-x:${channelData}`).digest('hex')}`;
  c.send({ event: 'pusher:subscribe', data: { channel: 'presence-x', channel_data: channelData, auth } });
  await c.event('pusher_internal:subscription_succeeded');
  t.equal((await api(s.http, '/api/users/erin/disconnect', {})).status, 200, 'erin disconnected through the API');
  t.equal((await c.waitClose()).code, 4009, "closed with Pusher's no-reconnect code");
});
