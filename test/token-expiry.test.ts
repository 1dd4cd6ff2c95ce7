// Token expiry after connect: at the token's exp the server asks for a fresh token (native `refresh`
// frame, Socket.IO `token:expiring`); a connection that sends one stays, one that does not is closed
// with 4010 after --token-grace. Proved on every transport by two connections sharing one short token:
// the one that refreshes is still served after the other was closed.
import t from 'tap';
import { io, type Socket } from 'socket.io-client';
import { signJwt } from 'rt-actors';
import WebSocket from 'ws';
import { RtClient } from 'rt-actors/client';
import { startServer, JWT_SECRET } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import { SseStream, request, eventually } from './helpers/http-stream.js';
import { nextEvent } from './helpers/sio.js';

const GRACE = 1;
const short = (sub = 'u1') => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 2 }, { secret: JWT_SECRET });
const fresh = (sub = 'u1') => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });

/** One connection, whatever its transport, as the test needs it. */
interface Conn {
  refreshAsked(): Promise<number>;
  refresh(token: string): Promise<Frame>;
  expired(): Promise<{ code: number; reason: string }>;
  alive(): Promise<boolean>;
  close(): void;
}

async function wsConn(base: string, token: string): Promise<Conn> {
  const c = await TestClient.connect(`${base}/ws?token=${token}`);
  return {
    refreshAsked: async () => (await c.next((f) => f.op === 'refresh', 30_000)).deadline,
    refresh: (tok) => c.request({ op: 'auth', token: tok }),
    expired: async () => {
      const d = await c.next((f) => f.op === 'disconnect', 30_000);
      const closed = await c.waitClose();
      return { code: closed.code === d.code ? d.code : -1, reason: d.reason };
    },
    alive: async () => (await c.request({ op: 'ping' })).pong === true,
    close: () => c.close(),
  };
}

/** SSE and long-polling share the session POST for client frames; they differ in how frames arrive. */
function sessionConn(post: (frames: Frame[]) => Promise<unknown>, next: (pred: (f: Frame) => boolean) => Promise<Frame>, close: () => void): Conn {
  let ref = 0;
  const ask = async (frame: Frame) => {
    const r = ++ref;
    const reply = next((f) => f.op === 'reply' && f.ref === r);
    await post([{ ...frame, ref: r }]);
    return reply;
  };
  return {
    refreshAsked: async () => (await next((f) => f.op === 'refresh')).deadline,
    refresh: (tok) => ask({ op: 'auth', token: tok }),
    expired: async () => {
      const d = await next((f) => f.op === 'disconnect');
      return { code: d.code, reason: d.reason };
    },
    alive: async () => (await ask({ op: 'ping' })).pong === true,
    close,
  };
}

async function sseConn(http: string, token: string): Promise<Conn> {
  const s = await SseStream.open(`${http}/sse?channels=exp&format=native&token=${token}`);
  const welcome = await s.until((ev) => ev.find((e) => e.json?.op === 'welcome')?.json);
  const seen = new Set<number>();
  const next = (pred: (f: Frame) => boolean) =>
    s.until((ev) => {
      const i = ev.findIndex((e, k) => !seen.has(k) && e.json && pred(e.json));
      if (i < 0) return undefined;
      seen.add(i);
      return ev[i]!.json;
    }, 30_000);
  const post = (frames: Frame[]) => request('POST', `${http}/sse?sid=${welcome.session}`, JSON.stringify(frames), { 'content-type': 'application/json' });
  return sessionConn(post, next, () => s.close());
}

async function pollConn(http: string, token: string): Promise<Conn> {
  const first = await request('GET', `${http}/poll?token=${token}`);
  const sid = first.json.frames[0].session as string;
  const frames: Frame[] = [...first.json.frames];
  let ack = first.json.seq as number;
  let stopped = false;
  (async () => {
    while (!stopped) {
      const r = await request('GET', `${http}/poll?sid=${sid}&ack=${ack}`).catch(() => undefined);
      if (!r || r.status !== 200) break;
      frames.push(...r.json.frames);
      ack = r.json.seq;
      if (r.json.frames.some((f: Frame) => f.op === 'disconnect')) break;
    }
  })();
  const next = (pred: (f: Frame) => boolean) =>
    eventually(() => {
      const i = frames.findIndex(pred);
      return i < 0 ? undefined : frames.splice(i, 1)[0];
    }, 'a poll frame', 30_000);
  const post = (fs: Frame[]) => request('POST', `${http}/poll?sid=${sid}`, JSON.stringify(fs), { 'content-type': 'application/json' });
  return sessionConn(post, next, () => {
    stopped = true;
    void request('DELETE', `${http}/poll?sid=${sid}`).catch(() => {});
  });
}

async function sioConn(http: string, token: string, transport: 'polling' | 'websocket'): Promise<Conn> {
  const s: Socket = io(http, { transports: [transport], auth: { token }, reconnection: false, forceNew: true });
  const expiring = nextEvent(s, 'token:expiring', () => true, 30_000);
  const expiredEv = nextEvent(s, 'token:expired', () => true, 30_000).catch((err) => {
    throw new Error(`socket.io ${transport}: ${err.message} (events seen: ${seen.join(', ')})`);
  });
  const seen: string[] = [];
  s.onAny((ev) => seen.push(ev));
  s.on('disconnect', (r) => seen.push(`disconnect:${r}`));
  const gone = nextEvent(s, 'disconnect', () => true, 30_000);
  await new Promise<void>((resolve, reject) => (s.once('connect', () => resolve()), s.once('connect_error', reject)));
  expiring.catch(() => {});
  expiredEv.catch(() => {});
  gone.catch(() => {});
  return {
    refreshAsked: async () => (await expiring)[0].deadline,
    refresh: (tok) => s.timeout(5000).emitWithAck('token:refresh', { token: tok }),
    expired: async () => {
      const [info] = await expiredEv;
      const [reason] = await gone;
      return { code: reason === 'io server disconnect' ? info.code : -1, reason: info.reason };
    },
    alive: async () => s.connected && (await s.timeout(5000).emitWithAck('subscribe', { channel: 'still-here' })).ok === true,
    close: () => s.close(),
  };
}

const TRANSPORTS: [string, (s: { url: string; http: string }, token: string) => Promise<Conn>][] = [
  ['ws', (s, tok) => wsConn(s.url, tok)],
  ['sse', (s, tok) => sseConn(s.http, tok)],
  ['poll', (s, tok) => pollConn(s.http, tok)],
  ['socket.io polling', (s, tok) => sioConn(s.http, tok, 'polling')],
  ['socket.io websocket', (s, tok) => sioConn(s.http, tok, 'websocket')],
];

t.test('at exp a fresh token keeps the connection; without one it is closed with 4010', async (t) => {
  const s = await startServer(t, { tokenGrace: GRACE, pollTimeout: 2 });
  await Promise.all(
    TRANSPORTS.map(async ([name, open]) => {
      const token = short();
      const keeper = await open(s, token);
      const dropper = await open(s, token);
      t.teardown(() => (keeper.close(), dropper.close()));
      const [deadline] = await Promise.all([keeper.refreshAsked(), dropper.refreshAsked()]);
      t.ok(deadline >= Date.now() / 1000 - 1 && deadline <= Date.now() / 1000 + GRACE + 1, `${name}: asked for a fresh token with a deadline ${GRACE} s out`);
      const r = await keeper.refresh(fresh());
      t.equal(r.ok, true, `${name}: the fresh token is accepted`);
      const closed = await dropper.expired();
      t.equal(closed.code, 4010, `${name}: no fresh token → closed with 4010`);
      t.match(closed.reason, /token expired/, `${name}: the reason says so`);
      t.equal(await keeper.alive(), true, `${name}: the refreshed connection is still served`);
    }),
  );
});

t.test('a refresh with another user or a bad token is refused, and the connection still closes at the deadline', async (t) => {
  const s = await startServer(t, { tokenGrace: GRACE });
  const c = await wsConn(s.url, short());
  t.teardown(() => c.close());
  await c.refreshAsked();
  const other = await c.refresh(fresh('someone-else'));
  t.same([other.ok, other.error?.code], [false, 'forbidden']);
  const bad = await c.refresh('not.a.token');
  t.equal(bad.ok, false);
  t.match(bad.error.code, /^token_/);
  t.equal((await c.expired()).code, 4010);
});

t.test('the client library renews its token on the live connection, on every transport', async (t) => {
  const s = await startServer(t, { tokenGrace: GRACE });
  for (const transport of ['websocket', 'sse', 'polling'] as const) {
    let minted = 0;
    const client = new RtClient(s.http, { WebSocket, transports: [transport], token: () => (minted++, short()), rememberTransport: false });
    t.teardown(() => client.disconnect());
    const drops: unknown[] = [];
    client.on('disconnected', (info) => drops.push(info));
    await eventually(() => client.state === 'connected', 'connected');
    // A raw connection with the same kind of token is the clock: once it was closed for expiry, the
    // library's connection has lived through at least one expiry too.
    const control = await wsConn(s.url, short());
    t.equal((await control.expired()).code, 4010);
    control.close();
    t.same(drops, [], `${transport}: the library connection was never dropped`);
    t.ok(minted >= 2, `${transport}: the token function was called again (${minted} tokens)`);
    const ch = client.channel('lib-exp');
    await new Promise<void>((r) => ch.subscribed(() => r()));
    t.pass(`${transport}: and it still serves requests`);
    client.disconnect();
  }
});

t.test('a token expired by more than --token-grace is refused at connect, within the clock skew too', async (t) => {
  // 10 s past exp: inside the 30 s clock skew, outside a 2 s grace. Accepted, the connection would be
  // closed with 4010 at once, and a client reconnecting with the same token would loop.
  const s = await startServer(t, { tokenGrace: 2 });
  const stale = signJwt({ sub: 'u1', exp: Math.floor(Date.now() / 1000) - 10 }, { secret: JWT_SECRET });
  const res = await request('GET', `${s.http}/sse?channels=news&token=${stale}`);
  t.equal(res.status, 401, 'refused');
  t.match(res.text, /token_expired/);
  // Within the grace it is still accepted (and asked for a fresh token).
  const recent = signJwt({ sub: 'u1', exp: Math.floor(Date.now() / 1000) - 1 }, { secret: JWT_SECRET });
  const c = await TestClient.connect(`${s.url}/ws?token=${recent}`);
  t.teardown(() => c.close());
  t.ok((await c.next((f) => f.op === 'refresh', 10_000)).deadline, 'admitted, then asked for a fresh token');
});
