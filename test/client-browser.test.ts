/// <reference lib="dom" />
// The browser bundle (/client.js) in headless Chromium, on every transport with the browser's own
// WebSocket, EventSource and fetch; and a bare EventSource on /sse.
import t from 'tap';
import { launchBrowser } from './helpers/browser.js';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';

t.test('a Chromium page: /client.js on every transport, and a plain EventSource', async (t) => {
  const s = await startServer(t, { clientPublish: 'all' });
  const browser = await launchBrowser(t);
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${s.http}/health`);
  const script = await page.request.get(`${s.http}/client.js`);
  t.equal(script.status(), 200);
  t.match(script.headers()['content-type'], /javascript/);
  t.ok(script.headers()['etag'], 'cacheable');
  await page.addScriptTag({ url: '/client.js' });
  t.same(await page.evaluate(() => Object.keys((window as any).RtActors).sort()), ['Channel', 'PresenceChannel', 'RtClient', 'RtClientError', 'SseParser', 'TRANSPORTS', 'connect']);

  await page.evaluate(() => {
    const w = window as any;
    w.got = {};
    w.clients = {};
    for (const tr of ['websocket', 'sse', 'polling']) {
      const got: unknown[] = (w.got[tr] = []);
      const c = new w.RtActors.RtClient(location.origin, { transports: [tr], rememberTransport: false });
      c.channel('browser-news').listen('e', (data: unknown, meta: { offset: number }) => got.push([data, meta.offset]));
      w.clients[tr] = c;
    }
    w.auto = new w.RtActors.RtClient(location.origin);
    w.es = [];
    w.esReady = false;
    const es = new EventSource('/sse?channels=browser-news');
    es.addEventListener('rt:subscribed', () => (w.esReady = true));
    es.addEventListener('e', (ev) => w.es.push([JSON.parse((ev as MessageEvent).data), (ev as MessageEvent).lastEventId]));
  });
  await page.waitForFunction(
    () => {
      const w = window as any;
      return w.esReady && w.auto.state === 'connected' && Object.values(w.clients).every((c: any) => c.channel('browser-news').state === 'subscribed');
    },
    undefined,
    { timeout: 15000 },
  );
  t.same(await page.evaluate(() => Object.fromEntries(Object.entries((window as any).clients).map(([k, c]: [string, any]) => [k, c.transport]))), {
    websocket: 'websocket',
    sse: 'sse',
    polling: 'polling',
  });
  t.equal(await page.evaluate(() => (window as any).auto.transport), 'websocket', 'the default client picks WebSocket');
  t.match(await page.evaluate(() => localStorage.getItem(`rt-actors.transport:${location.origin}`)), /^websocket@\d+$/, 'and remembers it');

  for (let i = 1; i <= 2; i++) await api(s.http, '/api/publish', { channel: 'browser-news', event: 'e', data: { from: 'api', i } });
  // each transport also publishes from the page (POST for SSE and polling)
  const acks = await page.evaluate(async () => {
    const w = window as any;
    const out: number[] = [];
    for (const tr of ['websocket', 'sse', 'polling']) out.push((await w.clients[tr].channel('browser-news').publish('e', { from: tr })).offset);
    return out;
  });
  t.same(acks, [3, 4, 5], 'publish acks carry the offsets');
  await page.waitForFunction(() => Object.values((window as any).got).every((g: any) => g.length === 5) && (window as any).es.length === 5, undefined, { timeout: 10000 });
  const got = await page.evaluate(() => (window as any).got);
  const expected = [[{ from: 'api', i: 1 }, 1], [{ from: 'api', i: 2 }, 2], [{ from: 'websocket' }, 3], [{ from: 'sse' }, 4], [{ from: 'polling' }, 5]];
  for (const tr of ['websocket', 'sse', 'polling']) t.same(got[tr], expected, `${tr}: every message, in order, once`);
  const es = await page.evaluate(() => (window as any).es);
  t.same(es.map((e: any) => e[0].offset), [1, 2, 3, 4, 5], 'EventSource got the named events');
  t.match(es[4][1], /^5\./, 'its lastEventId is the resumable position');
  await page.evaluate(() => {
    const w = window as any;
    for (const c of [...Object.values(w.clients), w.auto]) (c as any).disconnect();
  });

  // EventSource hides a refused stream's status, and a browser's WebSocket a refused upgrade's: the
  // client still learns the 401 (asking the same URL with fetch) and stops.
  const expired = signJwt({ sub: 'old', exp: Math.floor(Date.now() / 1000) - 120 }, { secret: JWT_SECRET });
  for (const transport of ['sse', 'websocket']) {
    const refusal = await page.evaluate(
      async ([token, tr]) => {
        const w = window as any;
        const c = new w.RtActors.RtClient(location.origin, { transports: [tr], token, rememberTransport: false, reconnectDelay: 50, maxReconnectDelay: 100 });
        const errors: string[] = [];
        // Five rounds of connect_failed: it retries without knowing why.
        await new Promise<void>((resolve) => c.on('error', (e: { code: string }) => (errors.push(e.code), (e.code !== 'connect_failed' || errors.length === 5) && resolve())));
        const state = c.state;
        c.disconnect();
        return { errors, state };
      },
      [expired, transport],
    );
    t.same(refusal, { errors: ['token_expired'], state: 'disconnected' }, `${transport}: a fixed token refused stops the client with the server's error`);
  }
  t.same(pageErrors, [], 'no errors in the page');
});
