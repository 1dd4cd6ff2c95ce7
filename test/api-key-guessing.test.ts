// Wrong API keys are limited per address: a client guessing the key (or the dashboard token) gets 429
// after a few wrong ones a second, while the right key is never refused for it, from that address or
// another. Before, wrong keys were answered 401 as fast as they came.
import t from 'tap';
import http from 'node:http';
import { API_KEY, startServer } from './helpers/server.js';

function get(port: number, path: string, key: string, localAddress: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, localAddress, agent: false, headers: { authorization: `Bearer ${key}` } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
  });
}

t.test('wrong API keys from one address are refused 429 past a few a second; the right key always passes', async (t) => {
  const s = await startServer(t, { dashboard: true, dashboardToken: 'dash-token-0123456789' });
  for (const path of ['/api/channels', '/api/stats']) {
    const from = path === '/api/channels' ? '127.0.0.2' : '127.0.0.3';
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => get(s.port, path, `guess-${i}`, from)));
    const statuses = new Set(answers.map((a) => a.status));
    t.same([...statuses].sort(), [401, 429], `${path}: wrong keys are 401, then 429`);
    const refused = answers.find((a) => a.status === 429)!;
    t.match(refused.body, { error: { code: 'rate_limited', message: new RegExp(`wrong API keys per second from ${from.replace(/\./g, '\\.')}`) } }, `${path}: the refusal says why and for which address`);
    t.equal((await get(s.port, path, API_KEY, from)).status, 200, `${path}: the right key from the same address still passes`);
    t.equal((await get(s.port, path, 'guess-x', '127.0.0.4')).status, 401, `${path}: another address is not affected`);
  }
});
