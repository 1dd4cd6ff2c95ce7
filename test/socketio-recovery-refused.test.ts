// Connection state recovery and refused reconnects: a saved session survives a reconnect attempt that
// is refused (bad token, onConnect refusal), and is not resumed for a user kicked while away.
import t from 'tap';
import { io, type Socket } from 'socket.io-client';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { nextEvent } from './helpers/sio.js';
import { until } from './helpers/redis.js';

const ACTORS = new URL('./fixtures/socketio-actors', import.meta.url).pathname;
const token = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { secret: JWT_SECRET });

/** A client whose CONNECT payload is read from `auth.current` at each attempt; it reconnects only when told (connect()). */
async function client(t: { teardown(fn: () => unknown): void }, url: string, auth: { current: Record<string, unknown> }): Promise<Socket> {
  const c = io(url, { forceNew: true, transports: ['websocket'], reconnection: false, timeout: 5000, auth: (cb) => cb(auth.current) });
  t.teardown(() => c.close());
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  return c;
}

/** Drops the client's transport (a recoverable loss) and waits until the server has saved the session. */
async function drop(base: string, c: Socket, channel: string): Promise<void> {
  const gone = nextEvent(c, 'disconnect');
  c.io.engine.close();
  await gone;
  await until('the server noticed the drop', async () => (await api(base, `/api/channels/${channel}`)).body.subscribers === 0);
}

t.test('a refused reconnect attempt does not use the saved session up: the next one recovers', async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  const refusals: Array<[string, Record<string, unknown>, string]> = [
    ['/', { token: token('rf1').slice(0, -4) + 'AAAA' }, 'a bad token'],
    ['/orders', { refuse: true }, 'onConnect refused'],
  ];
  for (const [nsp, refused, why] of refusals) {
    const channel = `rf-${why.replace(/\W/g, '')}`;
    const auth = { current: { token: token('rf1') } as Record<string, unknown> };
    const c = await client(t, s.http + nsp, auth);
    const id = c.id;
    const seen: number[] = [];
    c.on('seq', (_ch: string, n: number) => seen.push(n));
    t.same(await c.emitWithAck('subscribe', { channel }), { ok: true });
    await api(s.http, '/api/publish', { channel, event: 'seq', data: 1 });
    await until('the first publication', () => seen.length === 1);
    await drop(s.http, c, channel);
    await api(s.http, '/api/publish', { channel, event: 'seq', data: 2 });
    auth.current = refused;
    const error = nextEvent(c, 'connect_error');
    c.connect();
    await error;
    auth.current = { token: token('rf1') };
    const back = nextEvent(c, 'connect');
    c.connect();
    await back;
    t.equal(c.recovered, true, `${why}: the retry recovers`);
    t.equal(c.id, id, `${why}: same socket id`);
    // A fresh socket has no channels: the missed publication would never come.
    if (!c.recovered) continue;
    await until('the missed publication', () => seen.length === 2);
    t.same(seen, [1, 2], `${why}: the publication missed while away came back`);
    c.close();
  }
});

t.test('a user kicked (tokens revoked) while away does not get the saved session back without a token', async (t) => {
  const s = await startServer(t, { actors: ACTORS });
  const auth = { current: { token: token('rv1', { channels: ['private-rv*'] }) } as Record<string, unknown> };
  const c = await client(t, s.http, auth);
  t.same(await c.emitWithAck('subscribe', { channel: 'private-rv1' }), { ok: true });
  await drop(s.http, c, 'private-rv1');
  t.equal((await api(s.http, '/api/users/rv1/disconnect', {})).status, 200);
  // socket.io-client adds the pid and offset itself: this is the saved session and nothing else.
  auth.current = {};
  const back = nextEvent(c, 'connect');
  c.connect();
  await back;
  t.equal(c.recovered, false, 'not recovered');
  const who = await c.emitWithAck('whoami');
  t.same([who.userId, who.channels], [null, []], 'no identity, no channels');
  t.match(await c.emitWithAck('subscribe', { channel: 'private-rv2' }), { ok: false }, 'the revoked grants are gone');
});
