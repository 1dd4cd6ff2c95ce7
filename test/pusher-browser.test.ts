// Headless Chromium loads pusher-js's browser bundle from a page of another origin, authorizes a private
// channel through the page's own /broadcasting/auth (signed with the Pusher SDK, as Laravel does), and
// talks to a pusher-js client in Node. An origin that is not allowed gets 4009.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startServer } from './helpers/server.js';
import { launchBrowser } from './helpers/browser.js';
import { APP, connected, nextOn, pusherClient, sdk, subscribed } from './helpers/pusher.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

const bundle = readFileSync(new URL('../node_modules/pusher-js/dist/web/pusher.min.js', import.meta.url));

t.test('pusher-js browser bundle in Chromium', async (t) => {
  let backend: ReturnType<typeof sdk> | undefined;
  const page = createHttpServer(async (req, res) => {
    if (req.url === '/pusher.min.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      return res.end(bundle);
    }
    if (req.url === '/broadcasting/auth' && req.method === 'POST') {
      let body = '';
      for await (const c of req) body += c;
      const form = new URLSearchParams(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(backend!.authorizeChannel(form.get('socket_id')!, form.get('channel_name')!)));
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><html><head><script src="/pusher.min.js"></script></head><body>test page</body></html>');
  });
  await new Promise<void>((r) => page.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise((r) => page.close(r)));
  const origin = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
  const s = await startServer(t, { pusherApps: [{ ...APP, allowedOrigins: [origin] }] });
  backend = sdk(s.port);

  const node = pusherClient(t, s.port);
  await connected(node);
  const nodeChat = (await subscribed(node, 'private-chat')).channel;

  const browser = await launchBrowser(t);
  const tab = await browser.newPage();
  await tab.goto(origin + '/');
  const subscribedIn = await tab.evaluate(async ({ key, port }) => {
    const w = window as any;
    const p = new w.Pusher(key, { cluster: 'mt1', wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'], disableStats: true, channelAuthorization: { endpoint: '/broadcasting/auth', transport: 'ajax' } });
    w.p = p;
    w.got = [];
    const ch = p.subscribe('private-chat');
    w.ch = ch;
    ch.bind('news', (d: unknown) => w.got.push(d));
    await new Promise<void>((resolve, reject) => {
      ch.bind('pusher:subscription_succeeded', () => resolve());
      ch.bind('pusher:subscription_error', (e: unknown) => reject(new Error(JSON.stringify(e))));
    });
    return p.connection.socket_id as string;
  }, { key: APP.key, port: s.port });
  t.match(subscribedIn, /^\d+\.\d+$/, 'the browser subscribed to a private channel through the page\'s auth endpoint');

  await backend.trigger('private-chat', 'news', { n: 1 });
  const got = await tab.evaluate(async () => {
    const w = window as any;
    const deadline = Date.now() + 5000;
    while (w.got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return w.got;
  });
  t.same(got, [{ n: 1 }], 'the browser got the event');

  const toNode = nextOn(nodeChat, 'client-hello');
  await tab.evaluate(() => (window as any).ch.trigger('client-hello', { from: 'browser' }));
  t.same(await toNode, { from: 'browser' }, 'a client event from the browser reaches pusher-js in Node');

  // A page of an origin that is not allowed: refused with 4009, and pusher-js does not retry.
  const other = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><html><head><script src="${origin}/pusher.min.js"></script></head><body>other</body></html>`);
  });
  await new Promise<void>((r) => other.listen(0, '127.0.0.2', () => r()));
  t.teardown(() => new Promise((r) => other.close(r)));
  const tab2 = await browser.newPage();
  await tab2.goto(`http://127.0.0.2:${(other.address() as AddressInfo).port}/`);
  const refused = await tab2.evaluate(async ({ key, port }) => {
    const w = window as any;
    const p = new w.Pusher(key, { cluster: 'mt1', wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'], disableStats: true });
    return await new Promise((resolve) => {
      p.connection.bind('error', (e: any) => resolve(e?.data?.code ?? e?.error?.data?.code));
      setTimeout(() => resolve('timeout'), 5000);
    });
  }, { key: APP.key, port: s.port });
  t.equal(refused, 4009, 'a disallowed origin gets pusher:error 4009');
});
