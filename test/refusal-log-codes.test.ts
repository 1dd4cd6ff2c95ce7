// Every refusal line carries the stable code operators filter logs by: origin refusals, connection-limit
// refusals (host, per IP, a Pusher app's quota) and rate refusals were logged with a reason but no code
// on several transports, and Socket.IO's connection-limit refusals were not counted at all.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { cleanEnv, listeningPort, runCli, type CliProcess } from './helpers/cli.js';
import { until } from './helpers/redis.js';
import { openAs, PUSHER_OPTIONS, TRANSPORTS } from './helpers/open-as.js';
import { parsePrometheus, valueOf } from './helpers/prom.js';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
const API_KEY = 'refusal-codes-api-key-0123456789';
type Line = Record<string, any>;

function start(t: Parameters<Parameters<typeof t.test>[1]>[0], extra: string[]): CliProcess {
  return runCli(
    t,
    process.execPath,
    [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=2', '--log-format=json', '--log-level=debug', '--log-rate=0', `--pusher-app-id=${PUSHER_OPTIONS.pusherAppId}`, `--pusher-key=${PUSHER_OPTIONS.pusherKey}`, `--pusher-secret=${PUSHER_OPTIONS.pusherSecret}`, ...extra],
    { env: cleanEnv({ RT_API_KEY: API_KEY }) },
  );
}

const lines = (p: CliProcess): Line[] =>
  p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
const refusals = (p: CliProcess, reason: string) => lines(p).filter((l) => l.event === 'refusal' && l.reason === reason);

async function refusalsCounted(port: number, reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).text();
  return valueOf(parsePrometheus(text), 'rt_refusals_total', { reason });
}

t.test('origin refusals are logged with origin_not_allowed on every transport', async (t) => {
  const p = start(t, ['--allowed-origins=https://good.example']);
  const port = await listeningPort(p);
  for (const tr of TRANSPORTS) {
    const o = await openAs(port, tr, { origin: 'https://evil.example' });
    t.not(o.status, 101, `${tr}: refused`);
    o.close();
  }
  // The CORS preflights of the session transports refuse too.
  for (const path of ['/sse', '/socket.io/?EIO=4&transport=polling']) {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    t.equal(res.status, 403, `preflight ${path} refused`);
  }
  const n = TRANSPORTS.length + 2;
  const logged = await until(`${n} origin refusal lines`, () => (refusals(p, 'origin').length >= n ? refusals(p, 'origin') : null));
  t.same(
    logged.map((l) => l.code),
    logged.map(() => 'origin_not_allowed'),
    'each origin refusal names its code',
  );
  t.equal(await refusalsCounted(port, 'origin'), n);
  p.child.kill('SIGTERM');
  t.same(await p.exited, { code: 0, signal: null });
});

t.test('connection-limit refusals are logged with their code on every transport, and counted', async (t) => {
  const p = start(t, ['--max-connections-per-ip=1']);
  const port = await listeningPort(p);
  const first = await openAs(port, 'ws', {});
  t.equal(first.status, 101);
  for (const tr of TRANSPORTS) {
    const o = await openAs(port, tr, {});
    t.not(o.status, 101, `${tr}: refused`);
    t.not(o.status, 200, `${tr}: refused`);
    o.close();
  }
  const n = TRANSPORTS.length;
  const logged = await until(`${n} connection_limit refusal lines`, () => (refusals(p, 'connection_limit').length >= n ? refusals(p, 'connection_limit') : null));
  t.same(
    logged.map((l) => l.code),
    logged.map(() => 'too_many_connections_from_ip'),
    'each connection-limit refusal names its code',
  );
  t.equal(await refusalsCounted(port, 'connection_limit'), n, 'Socket.IO refusals are counted under connection_limit too');
  first.close();
  p.child.kill('SIGTERM');
  t.same(await p.exited, { code: 0, signal: null });
});

t.test("a Pusher app's connection quota and message rate refusals are logged with their code", async (t) => {
  const apps = JSON.stringify([{ id: '1', key: 'quota-key', secret: 'quota-secret-0123456789', maxConnections: 1 }]);
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--log-format=json', '--log-level=debug', '--log-rate=0', `--pusher-apps=${apps}`, '--rate-limit=1', '--rate-burst=1'], {
    env: cleanEnv({ RT_API_KEY: API_KEY }),
  });
  const port = await listeningPort(p);
  const open = (): Promise<{ ws: WebSocket; first: any; frames: any[] }> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/app/quota-key?protocol=7`);
      const frames: any[] = [];
      ws.on('message', (m) => {
        frames.push(JSON.parse(String(m)));
        if (frames.length === 1) resolve({ ws, first: frames[0], frames });
      });
      ws.once('error', reject);
    });
  const a = await open();
  t.equal(a.first.event, 'pusher:connection_established');
  const b = await open();
  t.equal(b.first.event, 'pusher:error', 'over the app quota');
  b.ws.terminate();
  const quota = await until('the quota refusal line', () => refusals(p, 'connection_limit')[0]);
  t.equal(quota.code, 'app_over_quota');

  // Past --rate-limit: a few pings in a row, the later ones refused.
  for (let i = 0; i < 5; i++) a.ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
  await until('a rate refusal', () => a.frames.some((f) => f.event === 'pusher:error'));
  const rate = await until('the rate refusal line', () => refusals(p, 'rate_limit')[0]);
  t.equal(rate.code, 'rate_limited');
  a.ws.terminate();
  p.child.kill('SIGTERM');
  t.same(await p.exited, { code: 0, signal: null });
});
