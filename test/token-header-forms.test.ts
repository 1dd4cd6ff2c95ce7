// The connection token in the forms a client may send it, read alike on every native transport: the
// `Bearer` scheme in any case (RFC 7235 makes it case-insensitive), spaces around the token, and an
// empty `?token=` beside the header. /ws compared `Bearer ` case- and space-exactly, so `bearer <JWT>`
// connected anonymously (refused as "no token" with --require-auth) where /sse and /poll took the user.
import t from 'tap';
import WebSocket from 'ws';
import { signJwt } from 'rt-actors';
import { JWT_SECRET, startServer } from './helpers/server.js';
import { openAs } from './helpers/open-as.js';

/** The user named by /ws's welcome (null: anonymous), or the HTTP status of a refused upgrade. */
function wsUser(url: string, headers: Record<string, string>): Promise<string | null | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    ws.once('message', (raw) => {
      ws.terminate();
      const f = JSON.parse(raw.toString());
      resolve(f.op === 'welcome' ? f.user : `refused: ${f.error?.code}`);
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', reject);
  });
}

const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

t.test('every form of the Authorization header identifies the user on /ws, /sse and /poll', async (t) => {
  const s = await startServer(t, { requireAuth: true });
  const jwt = token('ada');
  for (const header of [`Bearer ${jwt}`, `bearer ${jwt}`, `BEARER ${jwt}`, `Bearer  ${jwt}`, `Bearer ${jwt} `]) {
    const form = JSON.stringify(header.replace(jwt, '<JWT>'));
    t.equal(await wsUser(`${s.url}/ws`, { authorization: header }), 'ada', `/ws ${form}: the welcome names the user`);
    const poll = await openAs(s.port, 'poll', { authorization: header });
    poll.close();
    t.equal(poll.body?.frames?.[0]?.user, 'ada', `/poll ${form}: the welcome names the user`);
    const sse = await openAs(s.port, 'sse', { authorization: header });
    sse.close();
    t.equal(sse.status, 200, `/sse ${form}: admitted under --require-auth`);
  }
});

t.test('an empty ?token= beside a bearer header is no token on /ws, as on /sse and /poll', async (t) => {
  const s = await startServer(t);
  t.equal(await wsUser(`${s.url}/ws?token=`, { authorization: `Bearer ${token('bo')}` }), 'bo', 'the header token identifies the connection');
  t.equal(await wsUser(`${s.url}/ws?token=`, {}), null, 'an empty ?token= alone connects without a user');
  const poll = await openAs(s.port, 'poll', {});
  poll.close();
  t.equal(poll.body?.frames?.[0]?.user, null, '(as /poll does without a token)');
});
