// A token up to the verifier's 8 KiB limit can be presented where the docs say tokens go: in the
// upgrade's query string or Authorization header, and in /sse's query string. uWS's default 4 KiB
// header limit answered such a request 431 with an HTML page, before our code saw it, so a token
// with a long channels claim (a few hundred patterns) could never connect. Past 8 KiB the refusal
// is ours: 401 token_malformed in JSON.
import t from 'tap';
import WebSocket from 'ws';
import { signJwt } from 'rt-actors';
import { startServer, JWT_SECRET } from './helpers/server.js';

function tokenOfAbout(chars: number): string {
  const channels: string[] = [];
  let token = '';
  while (token.length < chars) {
    channels.push(`private-team-${channels.length}.*`);
    token = signJwt({ sub: 'big', channels, exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
  }
  return token;
}

type Outcome = { open: true; welcome: any } | { open: false; status: number; type: string; body: string };

function connect(url: string, headers: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('message', (m) => {
      resolve({ open: true, welcome: JSON.parse(String(m)) });
      ws.close();
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ open: false, status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    ws.once('error', reject);
  });
}

t.test('a 7 KB token connects by query string, header and SSE; a 9 KB one is refused in JSON', async (t) => {
  const server = await startServer(t);
  const token = tokenOfAbout(7000);
  t.ok(token.length > 6500 && token.length < 8192, `token is ${token.length} characters`);

  const byQuery = await connect(`${server.url}/ws?token=${token}`);
  t.ok(byQuery.open, 'query-string token: upgraded');
  if (byQuery.open) t.equal(byQuery.welcome.user, 'big');

  const byHeader = await connect(`${server.url}/ws`, { authorization: `Bearer ${token}` });
  t.ok(byHeader.open, 'Authorization header: upgraded');
  if (byHeader.open) t.equal(byHeader.welcome.user, 'big');

  const ac = new AbortController();
  const sse = await fetch(`${server.http}/sse?token=${token}&channels=news`, { signal: ac.signal });
  t.equal(sse.status, 200, 'SSE with the token in its query string');
  ac.abort();

  const tooBig = tokenOfAbout(9000);
  const refused = await connect(`${server.url}/ws?token=${tooBig}`);
  t.notOk(refused.open);
  if (!refused.open) {
    t.equal(refused.status, 401);
    t.match(refused.type, /json/);
    t.equal(JSON.parse(refused.body).error.code, 'token_malformed');
  }
});
