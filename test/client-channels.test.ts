// A channel left and joined again at once (a component unmounted and mounted again), on the native
// protocol and through the client library; disconnect() while a transport is still connecting;
// requests made while the connection is down; an SSE server that never ends an event; a channel
// actor's pushes, kicks, join data and replies; frames POSTed in batches that fit --max-payload, a
// frame over it, and a malformed frame batched with good ones.
import t from 'tap';
import net from 'node:net';
import http from 'node:http';
import WebSocket from 'ws';
import { RtClient, type ClientOptions, type TransportName } from 'rt-actors/client';
import { ownerOf } from '../dist/src/runtime/hash.js';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { eventually } from './helpers/http-stream.js';

const TRANSPORTS: TransportName[] = ['websocket', 'sse', 'polling'];
// One server for the tests that need nothing of their own (starting one with actors takes seconds).
const shared = startServer(t, { actors: new URL('./fixtures/actors', import.meta.url).pathname, clientPublish: 'all' });

function client(t: { teardown(fn: () => unknown): void }, url: string, opts: ClientOptions = {}): RtClient {
  const c = new RtClient(url, { WebSocket, reconnectDelay: 50, maxReconnectDelay: 400, connectTimeout: 3000, rememberTransport: false, ...opts });
  t.teardown(() => c.disconnect());
  return c;
}

t.test('native protocol: subscribe, unsubscribe, subscribe sent back to back take effect in that order', async (t) => {
  const s = await shared;
  const c = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => c.close());
  const home = Number(c.welcome.socket_id.split('.')[0]);
  // Owned by the other shard: the subscribe waits on the ring while the unsubscribe would not.
  let name = '';
  for (let i = 0; !name; i++) if (ownerOf(`again-${i}`, 2) !== home) name = `again-${i}`;
  const replies = [c.request({ op: 'subscribe', channel: name }), c.request({ op: 'unsubscribe', channel: name }), c.request({ op: 'subscribe', channel: name })];
  const [sub, unsub, again] = await Promise.all(replies);
  t.match(sub, { ok: true, channel: name });
  t.match(unsub, { ok: true, channel: name }, 'the unsubscribe finds the subscription it follows');
  t.match(again, { ok: true, channel: name }, 'the second subscribe is not refused as a duplicate');
  t.equal((await api(s.http, `/api/channels/${name}`)).body.subscribers, 1);
  await api(s.http, '/api/publish', { channel: name, event: 'e', data: 1 });
  t.match(await c.next((f) => f.op === 'message' && f.channel === name), { data: 1 });
});

t.test('client: unsubscribe() and channel() of the same name right after leave it subscribed', async (t) => {
  const s = await shared;
  for (const tr of TRANSPORTS) {
    await t.test(tr, async (t) => {
      const c = client(t, s.http, { transports: [tr] });
      await eventually(() => c.state === 'connected', 'connected');
      const name = `remount-${tr}`;
      const errors: string[] = [];
      // Left while its subscribe is in flight, then joined again.
      c.channel(name).unsubscribe();
      const got: unknown[] = [];
      const ch = c.channel(name).listen('e', (d) => got.push(d));
      ch.on('error', (e) => errors.push(e.code));
      await eventually(() => ch.state === 'subscribed' || ch.state === 'failed', 'the subscribe reply');
      t.equal(ch.state, 'subscribed');
      // Left once subscribed, then joined again.
      ch.unsubscribe();
      const ch2 = c.channel(name).listen('e', (d) => got.push(d));
      ch2.on('error', (e) => errors.push(e.code));
      await eventually(() => ch2.state === 'subscribed' || ch2.state === 'failed', 'the second subscribe reply');
      t.same(errors, [], 'no already_subscribed');
      await api(s.http, '/api/publish', { channel: name, event: 'e', data: 'live' });
      await eventually(() => got.length > 0, 'the message');
      t.same(got, ['live'], 'delivered once, to the channel now joined');
      t.equal((await api(s.http, `/api/channels/${name}`)).body.subscribers, 1, 'the server holds one subscription');
    });
  }
});

t.test('disconnect() while a transport is still connecting releases its socket', async (t) => {
  // A server that accepts and never answers: the attempt would wait out connectTimeout.
  const open = new Set<net.Socket>();
  const accepted: net.Socket[] = [];
  const hole = net.createServer((sock) => {
    open.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => open.delete(sock));
    // Read (or the client's FIN goes unnoticed); a socket counts once it carries a request.
    sock.once('data', () => accepted.push(sock));
  });
  await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of open) s.destroy();
    hole.close();
  });
  const url = `http://127.0.0.1:${(hole.address() as net.AddressInfo).port}`;
  for (const tr of TRANSPORTS) {
    await t.test(tr, async (t) => {
      const before = accepted.length;
      const c = client(t, url, { transports: [tr], connectTimeout: 600_000 });
      await eventually(() => accepted.length > before, 'the attempt\'s request');
      const attempt = accepted[before]!;
      c.disconnect();
      t.equal(c.state, 'disconnected');
      // (After an aborted request Node's fetch may open a spare connection of its own, unused and
      // unreferenced, which it closes after its keep-alive timeout, or reuses: only the attempt's is ours.)
      await eventually(() => !open.has(attempt), 'the attempt\'s socket closed');
    });
  }
});

t.test('a request queued while disconnected that times out is not_sent, and is not sent later', async (t) => {
  const s = await shared;
  // A proxy whose connections can be cut, and which can refuse new ones for a while.
  let refusing = false;
  const socks = new Set<net.Socket>();
  const proxy = net.createServer((down) => {
    if (refusing) return void down.destroy();
    const up = net.connect(s.port, '127.0.0.1');
    for (const [a, b] of [[down, up], [up, down]] as const) {
      socks.add(a);
      a.on('error', () => {});
      a.on('close', () => {
        socks.delete(a);
        b.destroy();
      });
    }
    down.pipe(up).pipe(down);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const x of socks) x.destroy();
    proxy.close();
  });
  const url = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
  for (const tr of TRANSPORTS) {
    await t.test(tr, async (t) => {
      const c = client(t, url, { transports: [tr], ackTimeout: 300, connectTimeout: 1000 });
      const got: unknown[] = [];
      const ch = c.channel(`queued-${tr}`).listen('e', (d) => got.push(d));
      await eventually(() => ch.state === 'subscribed', 'subscribed');
      await t.rejects(ch.publish('', 1), { code: 'bad_frame' }, 'a bad event name is a rejection, not a throw');

      refusing = true;
      for (const x of socks) x.destroy();
      await eventually(() => c.state !== 'connected', 'the connection lost');
      await t.rejects(ch.publish('e', 'offline'), { code: 'not_sent' }, 'never sent: the app may retry it');
      refusing = false;
      await eventually(() => c.state === 'connected' && ch.state === 'subscribed', 'back and subscribed');
      await ch.publish('e', 'sentinel');
      await eventually(() => got.includes('sentinel'), 'the sentinel');
      t.same(got, ['sentinel'], 'the timed-out request was not sent after the reconnect');
    });
  }
});

t.test('an SSE stream whose event never ends is cut off, not buffered without end', async (t) => {
  // A broken or hostile server: a welcome, then data lines with no blank line to end the event, up
  // to 64 MiB (the client's bound is 16 MiB of one event's data).
  const line = `data: ${'x'.repeat(64 * 1024)}\n`;
  const server = http.createServer((req, res) => {
    if (!req.url?.startsWith('/sse')) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(`data: ${JSON.stringify({ op: 'welcome', socket_id: '0.1', session: 's', user: null, heartbeat: 15 })}\n\n`);
    let sent = 0;
    const pump = () => {
      while (sent < 1024 && !res.destroyed) {
        sent++;
        if (!res.write(line)) return void res.once('drain', pump);
      }
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  t.teardown(() => server.closeAllConnections());
  const c = client(t, `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, { transports: ['sse'], EventSource: null, reconnectDelay: 60_000 });
  const reasons: string[] = [];
  c.on('disconnected', (d) => reasons.push(d.reason));
  await eventually(() => reasons.length > 0, 'the stream to be given up');
  t.match(reasons[0], /too long/);
});

t.test('a channel actor\'s push keeps the channel\'s position; its kick leaves the channel', async (t) => {
  const s = await shared;
  for (const tr of TRANSPORTS) {
    await t.test(tr, async (t) => {
      const name = `mod-${tr}`;
      const mod = client(t, s.http, { transports: [tr] });
      const user = client(t, s.http, { transports: [tr] });
      const modCh = mod.channel(name);
      const got: [string, unknown, number, boolean][] = [];
      const kicks: string[] = [];
      const ch = user
        .channel(name)
        .listenToAll((event, data, meta) => got.push([event, data, meta.offset, meta.push === true]))
        .on('kicked', ({ reason }) => kicks.push(reason));
      await eventually(() => modCh.state === 'subscribed' && ch.state === 'subscribed', 'both subscribed');
      await api(s.http, '/api/publish', { channel: name, event: 'n', data: 1 });
      await eventually(() => got.length === 1, 'the publication');

      await modCh.publish('dm', { to: user.socketId });
      await eventually(() => got.length === 2, 'the push');
      t.same(got[1], ['dm', { from: mod.socketId }, 1, true], 'a push, marked as one');
      t.equal(ch.offset, 1, 'the position a resume starts from is still the last publication\'s');

      await modCh.publish('kick', { to: user.socketId });
      await eventually(() => kicks.length === 1, 'the kick');
      t.same(kicks, ['kicked by a moderator']);
      t.equal(ch.state, 'unsubscribed');
      t.notOk(user.channels.includes(ch), 'the client forgot the channel: a reconnect does not rejoin it');
      const again = user.channel(name);
      t.not(again, ch, 'channel(name) joins again');
      await eventually(() => again.state === 'subscribed', 'subscribed again');
      t.equal((await api(s.http, `/api/channels/${name}`)).body.subscribers, 2);
    });
  }
});

t.test('a channel actor\'s join data, join reply and message reply go through the client', async (t) => {
  const s = await shared;
  for (const tr of TRANSPORTS) {
    await t.test(tr, async (t) => {
      const c = client(t, s.http, { transports: [tr] });
      // vault-*'s authorize wants the channel name's length as a pin (test/fixtures/actors/10-vault.ts).
      const vault = `vault-${tr}`;
      const errors: string[] = [];
      const wrong = c.channel(vault, { data: { pin: 'nope' } }).on('error', (e) => errors.push(e.code));
      await eventually(() => errors.length === 1, 'the refusal');
      t.same(errors, ['bad_pin'], 'the join data reached authorize');
      wrong.unsubscribe();
      const right = c.channel(vault, { data: { pin: String(vault.length) } });
      await eventually(() => right.state === 'subscribed' || right.state === 'failed', 'the second subscribe');
      t.equal(right.state, 'subscribed');

      const joins: unknown[] = [];
      const mod = c.channel(`mod-join-${tr}`).subscribed((info) => joins.push(info.data));
      await eventually(() => joins.length === 1, 'the join reply');
      t.same(joins, [{ you: c.socketId }], 'onJoin\'s reply is the subscribed event\'s data');
      t.same(await mod.publish('kick', { to: 'nobody' }), { data: { kicked: false } }, 'onMessage\'s reply, nothing published');
    });
  }
});

t.test('a subscribe that times out is undone on the server, not left there unseen', async (t) => {
  const s = await shared;
  // vault-*'s authorize takes 5 ms (test/fixtures/actors/10-vault.ts): a 1 ms ackTimeout always fires first.
  const name = 'vault-timeout';
  const data = { pin: String(name.length) };
  const a = client(t, s.http, { transports: ['websocket'] });
  await eventually(() => a.state === 'connected', 'connected');
  const impatient = client(t, s.http, { transports: ['websocket'], ackTimeout: 1 });
  await eventually(() => impatient.state === 'connected', 'connected');
  const errors: string[] = [];
  impatient.channel(name, { data }).on('error', (e) => errors.push(e.code));
  await eventually(() => errors.length === 1, 'the timeout');
  t.same(errors, ['timeout']);
  // The actor authorizes one join at a time: once a is in, the timed-out join has been answered too.
  const ac = a.channel(name, { data });
  await eventually(() => ac.state === 'subscribed', 'a subscribed');
  await eventually(async () => (await api(s.http, `/api/channels/${name}`)).body.subscribers === 1, 'only a subscribed on the server');
  t.pass('the timed-out subscription was undone');
});

t.test('SSE and long-polling: frames queued together are POSTed in batches the server accepts', async (t) => {
  const s = await shared;
  for (const tr of ['sse', 'polling'] as const) {
    await t.test(tr, async (t) => {
      const c = client(t, s.http, { transports: [tr] });
      const ch = c.channel(`batched-${tr}`);
      await eventually(() => ch.state === 'subscribed', 'subscribed');
      // 30 publishes of 4 KB (each well within the limits) queue behind the first POST: 120 KB together.
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => ch.publish('e', `${i}`.padEnd(4000, '.')).then(() => 'ok', (e) => e.code)));
      t.same(results, Array(30).fill('ok'), 'none refused as payload_too_large');
    });
  }
});

t.test('a frame over --max-payload is refused with payload_too_large on every transport, and the connection stays', async (t) => {
  const s = await shared;
  for (const tr of TRANSPORTS) {
    await t.test(tr, async (t) => {
      const c = client(t, s.http, { transports: [tr] });
      const drops: number[] = [];
      c.on('disconnected', (d) => drops.push(d.code));
      const ch = c.channel(`huge-${tr}`);
      await eventually(() => ch.state === 'subscribed', 'subscribed');
      const id = c.socketId;
      await t.rejects(ch.publish('e', 'x'.repeat(70_000)), { code: 'payload_too_large' });
      const { offset } = await ch.publish('e', 'small');
      t.equal(offset, 1, 'the next publish goes through');
      t.equal(c.socketId, id, 'on the same connection');
      t.same(drops, []);
    });
  }
});

t.test('a malformed frame fails alone: the frames POSTed in the same batch run, as over a WebSocket', async (t) => {
  const s = await shared;
  // Data nested deeper than the server takes (64 levels): the client does not check it, the server refuses it.
  let deep: unknown = 1;
  for (let i = 0; i < 70; i++) deep = [deep];
  for (const tr of TRANSPORTS) {
    await t.test(tr, async (t) => {
      const c = client(t, s.http, { transports: [tr] });
      const ch = c.channel(`batch-bad-${tr}`);
      await eventually(() => ch.state === 'subscribed', 'subscribed');
      const got: unknown[] = [];
      ch.listen('e', (d) => got.push(d));
      // The first publish goes at once; the others queue behind it and go together in the next POST.
      const results = Promise.all([1, deep, 3].map((d) => ch.publish('e', d).then(() => 'ok', (e) => e.code)));
      const other = c.channel(`batch-other-${tr}`);
      t.same(await results, ['ok', 'bad_frame', 'ok'], 'only the deep one is refused');
      await eventually(() => other.state === 'subscribed' || other.state === 'failed', 'the other channel answered');
      t.equal(other.state, 'subscribed', 'a channel joined meanwhile is joined, not failed with the bad frame');
      await eventually(() => got.length >= 2, 'the two publications');
      t.same(got, [1, 3], 'both good publications were delivered, in order');
    });
  }
});
