/// <reference lib="dom" />
// The dashboard in headless Chromium against a real server with traffic: sign-in without the key in the
// URL, real figures in the DOM, plots drawn, presence, the inspector showing a message published
// meanwhile, a test publish from the page reaching a WebSocket subscriber, and a screenshot that is not blank.
import t, { type Test } from 'tap';
import type { Page } from 'playwright-core';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { SignJWT } from 'jose';
import { launchBrowser } from './helpers/browser.js';
import { api, API_KEY, JWT_SECRET, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { colourStats, decodePng } from './helpers/png.js';

const DASH = 'dash-secret-token';

/** A page of the dashboard at `http`, signed in with the API key, once the app shows. */
async function signedIn(t: Test, http: string, viewport?: { width: number; height: number }): Promise<Page> {
  const browser = await launchBrowser(t);
  const page = await browser.newPage(viewport ? { viewport } : {});
  await page.goto(`${http}/dashboard`);
  await page.fill('#login-token', API_KEY);
  await page.click('#login-form button');
  await page.waitForSelector('#app:not([hidden])');
  return page;
}

async function token(sub: string, info: unknown): Promise<string> {
  return new SignJWT({ sub, user_info: info, channels: ['presence-*'] }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().sign(new TextEncoder().encode(JWT_SECRET));
}

t.test('off unless enabled', async (t) => {
  const s = await startServer(t);
  const r = await fetch(s.http + '/dashboard');
  t.equal(r.status, 404);
  t.equal((await api(s.http, '/api/stats', undefined, { key: DASH })).status, 401, 'no dashboard token without --dashboard');
});

t.test('the dashboard shows a live server', async (t) => {
  const s = await startServer(t, { dashboard: true, dashboardToken: DASH });

  // Traffic: three subscribers of "busy", a presence member, and a publisher that keeps going.
  const subs = await Promise.all([0, 1, 2].map(() => TestClient.connect(`${s.url}/ws`)));
  for (const c of subs) t.equal((await c.request({ op: 'subscribe', channel: 'busy' })).ok, true);
  const ann = await TestClient.connect(`${s.url}/ws?token=${await token('ann', { name: 'Ann' })}`);
  t.equal((await ann.request({ op: 'subscribe', channel: 'presence-ops' })).ok, true);
  t.teardown(() => [...subs, ann].forEach((c) => c.close()));
  let n = 0;
  const publisher = setInterval(() => void api(s.http, '/api/publish', { channel: 'busy', event: 'tick', data: { n: n++ } }).catch(() => {}), 50);
  t.teardown(() => clearInterval(publisher));

  const browser = await launchBrowser(t);
  const page = await browser.newPage({ viewport: { width: 1400, height: 1500 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const res = await page.goto(`${s.http}/dashboard`);
  t.equal(res?.status(), 200);
  t.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self'/, 'served with a strict CSP');

  // Sign in: a wrong token is refused; the right one is kept in sessionStorage, never in the URL.
  await page.fill('#login-token', 'wrong');
  await page.click('#login-form button');
  await page.waitForFunction(() => document.getElementById('login-error')!.textContent!.includes('wrong'));
  // A character a header cannot carry (pasted with the token) is named, not taken for an unreachable server.
  await page.fill('#login-token', DASH + '\u2026');
  await page.click('#login-form button');
  await page.waitForFunction(() => document.getElementById('login-error')!.textContent!.includes('\u2026'));
  t.match(await page.textContent('#login-error'), /contains "\u2026" \(U\+2026\), which an HTTP header cannot carry/);
  await page.fill('#login-token', DASH);
  await page.click('#login-form button');
  await page.waitForSelector('#app:not([hidden])');
  t.notMatch(page.url(), /dash-secret/, 'the token is not in the URL');
  t.equal(await page.evaluate(() => sessionStorage.getItem('rt-dashboard-token')), DASH);

  // Real figures: the page's numbers are the server's.
  await page.waitForFunction(() => document.getElementById('connections-total')!.textContent === '4', undefined, { timeout: 15000 });
  const stats = (await api(s.http, '/api/stats')).body;
  t.equal(stats.connections.total, 4, 'the server counts the four connections too');
  t.equal(await page.textContent('#host'), stats.host, 'the host id is shown');
  const threadRows = await page.$$eval('#threads tbody tr', (rows) => rows.map((r) => [(r as HTMLElement).dataset.thread, r.children[1]!.textContent]));
  t.same(threadRows, [['0', 'up'], ['1', 'up'], ['main', 'up']], 'every shard and the main thread, up');
  const shardConns = await page.$$eval('#threads tbody tr', (rows) => rows.map((r) => Number(r.children[2]!.textContent)));
  t.equal(shardConns.reduce((a, b) => a + b, 0), 4, 'connections per shard add up');
  const kinds = await page.$$eval('#by-kind tbody tr', (rows) => rows.map((r) => [...r.children].map((c) => c.textContent)));
  t.same(kinds, [['websocket', 'native', '4']], 'connections by transport and protocol');
  await page.waitForFunction(() => Number(document.getElementById('rate-out')!.textContent) > 0, undefined, { timeout: 15000 });
  t.pass('messages out per second is above zero under traffic');
  await page.waitForFunction(() => document.querySelector('#top-channels tbody tr[data-channel="busy"]')?.children[1]?.textContent === '3');
  t.pass('busiest channels list "busy" with its three subscribers');

  // The plot is drawn: pixels in the "out" colour on the canvas.
  const drawn = await page.evaluate(() => {
    const c = document.getElementById('plot-messages') as HTMLCanvasElement;
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3]! > 0) lit++;
    return { lit, total: d.length / 4, w: c.width };
  });
  t.ok(drawn.w > 100 && drawn.lit > 500, `the messages plot is drawn (${drawn.lit} of ${drawn.total} pixels)`);

  // A refusal shows up by reason.
  await new Promise<void>((resolve) => {
    const ws = new WebSocket(`${s.url}/ws`, { headers: { origin: 'https://evil.example' } });
    ws.on('unexpected-response', () => resolve());
    ws.on('error', () => resolve());
  });
  await page.waitForFunction(() => document.querySelector('#refusals tr[data-reason="origin"]')?.children[1]?.textContent === '1', undefined, { timeout: 15000 });
  t.pass('the refused origin is counted on the page');

  // Presence of a chosen channel.
  await page.fill('#presence-channel', 'presence-ops');
  await page.click('#presence-form button');
  await page.waitForSelector('#presence-members li[data-user="ann"]');
  t.match(await page.textContent('#presence-members'), /Ann/);

  // Inspector: a message published meanwhile appears.
  await page.fill('#inspect-channel', 'busy');
  await page.click('#inspect-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('inspect-state')!.textContent!.startsWith('watching busy'));
  t.equal((await api(s.http, '/api/publish', { channel: 'busy', event: 'sentinel', data: { seen: 'in the inspector' } })).status, 200);
  await page.waitForFunction(() => document.getElementById('inspector-log')!.textContent!.includes('in the inspector'));
  t.pass('the inspector shows the published message');

  // Publishing from the page reaches a WebSocket subscriber.
  await page.fill('#publish-event', 'from-dashboard');
  await page.fill('#publish-data', '{"hello":"subscribers"}');
  await page.click('#publish-form button');
  const got = await subs[0]!.next((f) => f.op === 'message' && f.event === 'from-dashboard', 10000);
  t.same(got.data, { hello: 'subscribers' }, 'a subscriber received the test message');
  await page.waitForFunction(() => document.getElementById('publish-result')!.textContent!.startsWith('published to busy'));

  // A screenshot that is not blank.
  await page.waitForTimeout(0);
  const shot = await page.screenshot({ fullPage: true });
  const file = join(tmpdir(), 'rt-actors-dashboard.png');
  writeFileSync(file, shot);
  const png = decodePng(shot);
  const colours = colourStats(png);
  t.ok(png.width >= 1000 && png.height >= 800, `screenshot ${png.width}×${png.height} (${file})`);
  t.ok(colours.distinct > 50 && colours.dominantShare < 0.9, `screenshot is not blank: ${colours.distinct} colours, the commonest covers ${(colours.dominantShare * 100).toFixed(0)}%`);

  // Signing out forgets the token.
  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])');
  t.equal(await page.evaluate(() => sessionStorage.getItem('rt-dashboard-token')), null);
  t.same(pageErrors, [], 'no errors in the page');
});

t.test('once the inspector is stopped, a test publish goes to the channel in the box', async (t) => {
  const s = await startServer(t, { dashboard: true });
  const sub = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => sub.close());
  t.equal((await sub.request({ op: 'subscribe', channel: 'chan-b' })).ok, true);
  const page = await signedIn(t, s.http);

  await page.fill('#inspect-channel', 'chan-a');
  await page.click('#inspect-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('inspect-state')!.textContent!.startsWith('watching chan-a'));
  await page.click('#inspect-stop');
  await page.fill('#inspect-channel', 'chan-b');
  await page.fill('#publish-event', 'after-stop');
  await page.click('#publish-form button');
  await page.waitForFunction(() => document.getElementById('publish-result')!.textContent !== '');
  t.match(await page.textContent('#publish-result'), /^published to chan-b /, 'the page says where it published');
  const got = await sub.next((f) => f.op === 'message' && f.event === 'after-stop', 10000);
  t.equal(got.channel, 'chan-b', "chan-b's subscriber received it");
});

t.test('200-character channel names and long member info stay inside their cards', async (t) => {
  const s = await startServer(t, { dashboard: true });
  const presence = 'presence-' + 'p'.repeat(191);
  const member = await TestClient.connect(`${s.url}/ws?token=${await token('u'.repeat(150), { bio: 'B'.repeat(3000) })}`);
  t.teardown(() => member.close());
  t.equal((await member.request({ op: 'subscribe', channel: presence })).ok, true);
  t.equal((await member.request({ op: 'subscribe', channel: 'c'.repeat(200) })).ok, true);
  const page = await signedIn(t, s.http, { width: 1400, height: 1400 });
  await page.waitForFunction(() => document.querySelectorAll('#top-channels tbody tr').length === 2, undefined, { timeout: 15000 });
  await page.fill('#presence-channel', presence);
  await page.click('#presence-form button');
  await page.waitForSelector('#presence-members li');
  const layout = await page.evaluate(() => {
    const escapes = (el: Element) => el.getBoundingClientRect().right > el.closest('.card')!.getBoundingClientRect().right + 0.5;
    return {
      cells: [...document.querySelectorAll('#top-channels tr')].flatMap((tr) => [...tr.children]).filter(escapes).map((c) => c.textContent),
      pageScrolls: document.documentElement.scrollWidth > document.documentElement.clientWidth,
    };
  });
  t.same(layout.cells, [], "every column of the busiest channels is inside its card (the offsets were pushed out)");
  t.equal(layout.pageScrolls, false, 'the page does not scroll sideways (the presence list ran past it)');
});

t.test("the page's publish→deliver p99 is of the last 10 s, not since start", async (t) => {
  const s = await startServer(t, { dashboard: true });
  const sub = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => sub.close());
  t.equal((await sub.request({ op: 'subscribe', channel: 'timed' })).ok, true);
  const page = await signedIn(t, s.http);

  // Publications while the page watches: a p99 shows.
  let n = 0;
  const publisher = setInterval(() => void api(s.http, '/api/publish', { channel: 'timed', event: 'tick', data: n++ }).catch(() => {}), 100);
  t.teardown(() => clearInterval(publisher));
  await page.waitForFunction(() => /s$/.test(document.getElementById('latency-p99')!.textContent!), undefined, { timeout: 15000 });
  t.pass(`a p99 shows under traffic: ${await page.textContent('#latency-p99')}`);
  clearInterval(publisher);
  const last = n;
  await sub.next((f) => f.op === 'message' && f.data === last - 1, 10000);

  // None since: the server's figure since start stays, the page's window empties.
  await page.waitForFunction(() => document.getElementById('latency-p99')!.textContent === '–', undefined, { timeout: 20000 });
  t.pass('no publication in the last 10 s: no p99');
  const stats = (await api(s.http, '/api/stats')).body;
  t.ok(stats.latency.p99Seconds > 0, `while the p99 since start is ${stats.latency.p99Seconds} s`);
  const counts = stats.latency.buckets.map((b: { count: number }) => b.count);
  t.ok(counts.every((c: number, i: number) => i === 0 || c >= counts[i - 1]) && counts.at(-1) <= stats.latency.count, '/api/stats gives the cumulative buckets');
});

// The page polled /api/stats on a fixed interval whether or not the last request had answered: with a slow
// server the requests piled up, and an answer arriving after a newer one drew the older figures over them.
t.test('a slow /api/stats: one request at a time', async (t) => {
  const s = await startServer(t, { dashboard: true });
  const page = await signedIn(t, s.http);
  let inFlight = 0;
  let most = 0;
  let answered = 0;
  // The network made slow in the browser: each answer, from the real server, arrives 2.5 s late.
  await page.route('**/api/stats', async (route) => {
    most = Math.max(most, ++inFlight);
    const res = await route.fetch();
    await new Promise((r) => setTimeout(r, 2500));
    await route.fulfill({ response: res }).catch(() => {});
    inFlight--;
    answered++;
  });
  const deadline = Date.now() + 20000;
  while (answered < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.ok(answered >= 3, `three slow answers came (${answered})`);
  t.equal(most, 1, 'never more than one /api/stats request in flight');
  await page.waitForFunction(() => /^updated /.test(document.getElementById('updated')!.textContent!), undefined, { timeout: 5000 });
  t.pass('the page still shows the figures');
});
