// --trust-proxy: from a trusted proxy the client address comes from X-Forwarded-For / X-Real-IP, so
// per-IP limits count each client; from anyone else those headers are ignored. On every transport.
import t from 'tap';
import { io } from 'socket.io-client';
import { startServer } from './helpers/server.js';
import { openAs, refusalMessage, PUSHER_OPTIONS, TRANSPORTS, type Opened } from './helpers/open-as.js';

const HANDLERS = new URL('./fixtures/proxy-handlers', import.meta.url).pathname;

t.test('from an untrusted peer, X-Forwarded-For and X-Real-IP are ignored', async (t) => {
  const s = await startServer(t, { maxConnectionsPerIp: 2, connectionRatePerIp: 0, ...PUSHER_OPTIONS });
  const open: Opened[] = [];
  t.teardown(() => open.forEach((o) => o.close()));
  let peer = 10;
  for (const tr of TRANSPORTS) {
    // Each transport connects from its own loopback address, so each starts with a fresh limit.
    const from = `127.0.0.${peer++}`;
    // Two connections claiming two different addresses use up the peer's two slots...
    const a = await openAs(s.port, tr, { 'x-forwarded-for': '198.51.100.1' }, from);
    const b = await openAs(s.port, tr, { 'x-real-ip': '198.51.100.2' }, from);
    open.push(a, b);
    t.equal(a.status < 300 && b.status < 300, true, `${tr}: first two admitted`);
    // ...so a third, claiming yet another, is refused: the headers did not pick the address counted.
    const c = await openAs(s.port, tr, { 'x-forwarded-for': '198.51.100.3' }, from);
    open.push(c);
    t.equal(c.status, 429, `${tr}: spoofed X-Forwarded-For does not escape the per-IP limit`);
    t.match(refusalMessage(c), new RegExp(`${from.replace(/\./g, '\\.')} already has 2 open connections.*--max-connections-per-ip.*--trust-proxy`), `${tr}: the refusal names the limit and the fix`);
  }
  for (const o of open.splice(0)) o.close();
});

t.test('from a trusted proxy, each forwarded address has its own limits', async (t) => {
  const s = await startServer(t, { maxConnectionsPerIp: 2, connectionRatePerIp: 0, trustProxy: ['loopback'], ...PUSHER_OPTIONS });
  const open: Opened[] = [];
  t.teardown(() => open.forEach((o) => o.close()));
  let n = 0;
  for (const tr of TRANSPORTS) {
    n++;
    const a = `203.0.113.${n}`;
    const b = `203.0.113.${100 + n}`;
    const c = `2001:db8::${n}`;
    for (let i = 0; i < 2; i++) {
      const o = await openAs(s.port, tr, { 'x-forwarded-for': a });
      open.push(o);
      t.ok(o.status < 300, `${tr}: ${a} connection ${i + 1} admitted`);
    }
    const third = await openAs(s.port, tr, { 'x-forwarded-for': a });
    open.push(third);
    t.equal(third.status, 429, `${tr}: ${a}'s third connection refused`);
    t.match(refusalMessage(third), new RegExp(`${a.replace(/\./g, '\\.')} already has 2 open connections`), `${tr}: the refusal names the forwarded address`);
    // The client cannot escape by prepending addresses: the rightmost untrusted entry counts.
    const spoofed = await openAs(s.port, tr, { 'x-forwarded-for': `6.6.6.6, ${a}, 127.0.0.1` });
    open.push(spoofed);
    t.equal(spoofed.status, 429, `${tr}: entries left of the proxy's own are not believed`);
    // Other clients behind the same proxy are unaffected.
    const other = await openAs(s.port, tr, { 'x-forwarded-for': b });
    const v6 = await openAs(s.port, tr, { 'x-real-ip': c });
    open.push(other, v6);
    t.ok(other.status < 300, `${tr}: ${b} admitted`);
    t.ok(v6.status < 300, `${tr}: X-Real-IP ${c} admitted`);
  }
});

t.test('a proxy that adds its own X-Forwarded-For line (HAProxy option forwardfor): the last line counts', async (t) => {
  // Several header lines are one comma-separated list (RFC 9110 §5.3): the client's line comes first,
  // the proxy's last. Before, only the first line was read, so the client chose its address.
  const s = await startServer(t, { maxConnectionsPerIp: 1, connectionRatePerIp: 0, trustProxy: ['loopback'], ...PUSHER_OPTIONS });
  const open: Opened[] = [];
  t.teardown(() => open.forEach((o) => o.close()));
  let n = 0;
  for (const tr of TRANSPORTS) {
    n++;
    const a = `203.0.113.${n}`;
    const b = `203.0.113.${100 + n}`;
    const first = await openAs(s.port, tr, { 'x-forwarded-for': ['6.6.6.6', a] });
    open.push(first);
    t.ok(first.status < 300, `${tr}: ${a} admitted`);
    const other = await openAs(s.port, tr, { 'x-forwarded-for': ['6.6.6.6', b] });
    open.push(other);
    t.ok(other.status < 300, `${tr}: ${b} admitted, though its client wrote the same first line`);
    const again = await openAs(s.port, tr, { 'x-forwarded-for': [`7.7.7.${n}`, a] });
    open.push(again);
    t.equal(again.status, 429, `${tr}: ${a}'s second connection refused, whatever its client wrote`);
    const realIp = await openAs(s.port, tr, { 'x-real-ip': [`7.7.8.${n}`, a] });
    open.push(realIp);
    t.equal(realIp.status, 429, `${tr}: X-Real-IP given twice: the proxy's (last) line counts`);
  }
});

t.test('Socket.IO request handlers see the forwarded address in handshake.address', async (t) => {
  const trusted = await startServer(t, { actors: HANDLERS, trustProxy: ['127.0.0.1'] });
  const untrusted = await startServer(t, { actors: HANDLERS });
  for (const transports of [['polling'], ['websocket']] as const) {
    for (const [s, expected] of [[trusted, '192.0.2.55'], [untrusted, '127.0.0.1']] as const) {
      const sock = io(s.http, { transports: [...transports], extraHeaders: { 'x-forwarded-for': '10.9.9.9, 192.0.2.55' }, reconnection: false, forceNew: true });
      t.teardown(() => sock.close());
      const address = await sock.timeout(5000).emitWithAck('address');
      t.equal(address, expected, `${transports[0]}, ${s === trusted ? 'trusted' : 'untrusted'} peer: ${expected}`);
      sock.close();
    }
  }
});

t.test('the connection-rate refusal says which limit fired and how to raise it', async (t) => {
  const s = await startServer(t, { connectionRatePerIp: 3 });
  const open: Opened[] = [];
  t.teardown(() => open.forEach((o) => o.close()));
  let refused: Opened | undefined;
  for (let i = 0; i < 50 && !refused; i++) {
    const o = await openAs(s.port, 'ws', {});
    open.push(o);
    if (o.status === 429) refused = o;
  }
  t.ok(refused, 'a burst past --connection-rate-per-ip is refused');
  t.equal(refused!.body.error.code, 'connection_rate_limited');
  t.match(refused!.body.error.message, /more than 3 new connections per second from 127\.0\.0\.1.*--connection-rate-per-ip.*RT_CONNECTION_RATE_PER_IP/);
  for (const o of open.splice(0)) o.close();
});

t.test('a bad --trust-proxy entry stops the start with a clear error', async (t) => {
  const startError = (trustProxy: string[]) => startServer(t, { trustProxy }).then(() => '', (err: Error) => err.message);
  t.match(await startError(['10.0.0.0/33']), /trustProxy \(createServer option\): "10\.0\.0\.0\/33" is not an IP address, a CIDR range/);
  t.match(await startError(['127.0.0.1', 'nginx.local']), /"nginx\.local" .*loopback, private, linklocal/);
});

t.test('300 clients behind one proxy, each with its own X-Forwarded-For, all connect', async (t) => {
  // Without --trust-proxy all 300 share 127.0.0.1's limit of 20 and 280 are refused.
  const s = await startServer(t, { maxConnectionsPerIp: 20, trustProxy: ['127.0.0.1'] });
  const open: Opened[] = [];
  t.teardown(() => open.forEach((o) => o.close()));
  const statuses: number[] = [];
  for (let i = 0; i < 300; i += 50) {
    const batch = await Promise.all(Array.from({ length: 50 }, (_, k) => openAs(s.port, 'ws', { 'x-forwarded-for': `100.64.${(i + k) >> 8}.${(i + k) & 255}` })));
    open.push(...batch);
    statuses.push(...batch.map((o) => o.status));
  }
  t.equal(statuses.filter((x) => x === 101).length, 300, 'every client admitted');
  await until(async () => (await fetch(`${s.http}/health`).then((r) => r.json())).connections >= 300);
  t.pass('health counts them');
  for (const o of open.splice(0)) o.close();
});

async function until(fn: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
