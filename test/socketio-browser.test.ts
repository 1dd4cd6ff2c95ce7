// Headless Chromium loads the official socket.io-client browser bundle from a page of another origin
// and talks to the gateway: polling then the upgrade, subscribe, deliveries, acks, ArrayBuffers.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startServer, api } from './helpers/server.js';
import { launchBrowser } from './helpers/browser.js';

const bundle = readFileSync(new URL('../node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url));
const JS_HANDLERS = new URL('./fixtures/socketio-js', import.meta.url).pathname;

t.test('socket.io-client browser bundle in Chromium', async (t) => {
  const page = createHttpServer((req, res) => {
    if (req.url === '/socket.io.min.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      return res.end(bundle);
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><html><head><script src="/socket.io.min.js"></script></head><body>test page</body></html>');
  });
  await new Promise<void>((r) => page.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise((r) => page.close(r)));
  const origin = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
  const s = await startServer(t, { actors: JS_HANDLERS, allowedOrigins: origin });

  const browser = await launchBrowser(t);
  const tab = await browser.newPage();
  await tab.goto(origin + '/');
  const server = s.http;

  const first = await tab.evaluate(async (url) => {
    const w = window as any;
    const socket = w.io(url, { reconnection: false });
    // The transport the Engine.IO handshake completed on (the upgrade may be over by 'connect').
    let firstTransport = '';
    socket.io.engine.once('open', () => (firstTransport = socket.io.engine.transport.name));
    w.sock = socket;
    w.got = [];
    socket.on('news', (channel: string, data: unknown) => w.got.push([channel, data]));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', (e: Error) => reject(new Error(e.message)));
    });
    const ack = await socket.emitWithAck('subscribe', { channel: 'browser' });
    return { id: socket.id, firstTransport, ack };
  }, server);
  t.equal(first.firstTransport, 'polling', 'connected over HTTP long-polling first (cross-origin, CORS)');
  t.same(first.ack, { ok: true }, 'subscribe acked');

  await api(s.http, '/api/publish', { channel: 'browser', event: 'news', data: { n: 1 } });
  const got = await tab.evaluate(async () => {
    const w = window as any;
    for (let i = 0; i < 500 && w.got.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    return w.got;
  });
  t.same(got, [['browser', { n: 1 }]], 'delivery received in the page');

  const upgraded = await tab.evaluate(async () => {
    const w = window as any;
    for (let i = 0; i < 500 && w.sock.io.engine.transport.name !== 'websocket'; i++) await new Promise((r) => setTimeout(r, 10));
    return w.sock.io.engine.transport.name;
  });
  t.equal(upgraded, 'websocket', 'upgraded to WebSocket');

  await api(s.http, '/api/publish', { channel: 'browser', event: 'news', data: { n: 2 } });
  const result = await tab.evaluate(async () => {
    const w = window as any;
    for (let i = 0; i < 500 && w.got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    const echo = await w.sock.emitWithAck('echo', 'a', 2, { three: true });
    const buf = new Uint8Array([1, 2, 3, 4]).buffer;
    const bin = await w.sock.emitWithAck('binary', { name: 'ab', bytes: buf });
    return { got: w.got, echo, size: bin.size, reversed: Array.from(new Uint8Array(bin.reversed)), isArrayBuffer: bin.reversed instanceof ArrayBuffer };
  });
  t.same(result.got[1], ['browser', { n: 2 }], 'delivery after the upgrade');
  t.same(result.echo, ['a', 2, { three: true }], 'ack with several values');
  t.equal(result.size, 4, 'ArrayBuffer sent from the page arrived');
  t.same(result.reversed, [4, 3, 2, 1], 'binary ack back as an ArrayBuffer');
  t.equal(result.isArrayBuffer, true);
  await tab.evaluate(() => (window as any).sock.close());
});
