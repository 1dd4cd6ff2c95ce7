// --auth-endpoint: the headers a client puts in a subscribe's auth.headers are forwarded to the backend
// (laravel-echo's CSRF token, its Authorization), but not the ones that say where a request came from.
// A backend trusting rt-actors as a proxy (Laravel's TrustProxies with '*', usual in containers) took
// the client's own X-Forwarded-For as the address of the user it was authorizing.
import t, { type Test } from 'tap';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startServer } from './helpers/server.js';
import { sioConnect } from './helpers/sio.js';

/** A backend that authorizes every subscribe and keeps each request's headers; a server asking it; a client. */
async function authorizingBackend(t: Test): Promise<{ seen: IncomingHttpHeaders[]; c: Awaited<ReturnType<typeof sioConnect>> }> {
  const seen: IncomingHttpHeaders[] = [];
  const backend = createHttpServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('true'));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise((r) => backend.close(r)));
  const s = await startServer(t, { authEndpoint: `http://127.0.0.1:${(backend.address() as AddressInfo).port}/broadcasting/auth` });
  return { seen, c: await sioConnect(t, s.http, { transports: ['websocket'] }) };
}

t.test('forwarding headers a client chose do not reach the auth endpoint', async (t) => {
  const { seen, c } = await authorizingBackend(t);
  const headers = {
    'X-CSRF-TOKEN': 'csrf-1',
    'X-Forwarded-For': '6.6.6.6',
    'X-Real-IP': '6.6.6.6',
    Forwarded: 'for=6.6.6.6;host=evil.example',
    'X-Forwarded-Host': 'evil.example',
    'X-Forwarded-Proto': 'https',
    'X-Forwarded-Port': '1',
    'X-Client-IP': '6.6.6.6',
  };
  t.same(await c.emitWithAck('subscribe', { channel: 'private-orders.1', auth: { headers } }), { ok: true }, 'authorized by the backend');
  t.equal(seen.length, 1, 'the backend was asked once');
  const got = seen[0]!;
  t.equal(got['x-csrf-token'], 'csrf-1', "the client's own headers are forwarded");
  for (const h of ['x-forwarded-for', 'x-real-ip', 'forwarded', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-client-ip']) {
    t.equal(got[h], undefined, `${h} is not forwarded`);
  }
});

t.test('a header value fetch cannot send is left out, not reported as the auth endpoint being unreachable', async (t) => {
  const { seen, c } = await authorizingBackend(t);
  // A character above U+00FF or a control character made fetch throw before any request was sent:
  // the subscribe failed with auth_unavailable, "auth endpoint unreachable".
  const headers = { 'X-CSRF-TOKEN': 'csrf-2', 'X-Wide': 'Ā', 'X-Emoji': '😀', 'X-Control': 'a\u0001b', 'X-Del': 'a\u007fb', 'X-Latin1': 'café' };
  t.same(await c.emitWithAck('subscribe', { channel: 'private-orders.2', auth: { headers } }), { ok: true }, 'authorized by the backend');
  t.equal(seen.length, 1, 'the backend was asked once');
  const got = seen[0]!;
  t.equal(got['x-csrf-token'], 'csrf-2', 'the valid headers are forwarded');
  t.equal(got['x-latin1'], 'café', 'an obs-text (Latin-1) value is forwarded');
  for (const h of ['x-wide', 'x-emoji', 'x-control', 'x-del']) t.equal(got[h], undefined, `${h} is left out`);
});
