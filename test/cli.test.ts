import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestClient } from './helpers/ws-client.js';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
const run = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20000 });

t.test('help and usage errors', async (t) => {
  const help = run(['--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /rt-actors start/);
  const startHelp = run(['start', '--help']);
  t.equal(startHelp.status, 0);
  for (const flag of ['--port', '--workers', '--api-key', '--jwt-secret', '--jwt-public-key', '--actors', '--history-size', '--max-payload', '--client-publish']) {
    t.match(startHelp.stdout, flag, `start --help documents ${flag}`);
  }
  t.match(startHelp.stdout, /RT_API_KEY/);
  const unknown = run(['start', '--prot=1']);
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown option --prot; accepted options: .*--port/);
  const badValue = run(['start', '--workers=lots']);
  t.equal(badValue.status, 2);
  t.match(badValue.stderr, /--workers.*'auto' or an integer/);
  const badEnum = run(['start', '--client-publish', 'maybe']);
  t.equal(badEnum.status, 2);
  t.match(badEnum.stderr, /one of none, private, all/);
  const badEnv = run(['start'], { RT_MAX_PAYLOAD: 'huge' });
  t.equal(badEnv.status, 2);
  t.match(badEnv.stderr, /RT_MAX_PAYLOAD/);
  const dir = mkdtempSync(join(tmpdir(), 'rt-cfg-'));
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ prot: 1 }));
  const badFile = run(['start', '--config', join(dir, 'c.json')]);
  t.equal(badFile.status, 2);
  t.match(badFile.stderr, /unknown key "prot"/);
  t.equal(run(['frobnicate']).status, 2);
  const tok = run(['token', '--sub', '42', '--channels', 'private-orders.*', '--ttl', '1h', '--secret', 's3cret']);
  t.equal(tok.status, 0);
  const jwt = tok.stdout.trim().split('\n').pop()!;
  const payload = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString());
  t.equal(payload.sub, '42');
  t.same(payload.channels, ['private-orders.*']);
  t.ok(payload.exp - payload.iat === 3600);
  writeFileSync(join(dir, 'secret.json'), JSON.stringify({ jwtSecret: 'from-config' }));
  const fromConfig = run(['token', '--sub', '7', '--config', join(dir, 'secret.json')]);
  t.equal(fromConfig.status, 0, 'the configured secret signs when --secret is absent');
  const noSecret = run(['token', '--sub', '7'], { RT_JWT_SECRET: '' });
  t.equal(noSecret.status, 2);
  t.match(noSecret.stderr, /no secret/);
});

t.test('start serves, prints the generated key once, and SIGTERM shuts down gracefully', async (t) => {
  const child = spawn(process.execPath, [bin, 'start', '--workers=2', '--port=0', '--host=127.0.0.1', '--log-level=warn'], { env: { ...process.env, RT_API_KEY: '' } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const deadline = Date.now() + 20000;
  while (!/listening on 127\.0\.0\.1:(\d+)/.test(out) || !/API key[^:]*: \S+\n/.test(out)) {
    if (Date.now() > deadline) throw new Error('server did not start: ' + out);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]);
  const key = /API key[^:]*: (\S+)/.exec(out)![1]!;
  t.match(out, /2 shards/);
  const health = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.json());
  t.equal(health.status, 'ok');
  const c = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
  await c.request({ op: 'subscribe', channel: 'x' });
  const pub = await fetch(`http://127.0.0.1:${port}/api/publish`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ channel: 'x', event: 'e', data: 1 }) });
  t.equal(pub.status, 200, 'printed key works');
  await c.next((f) => f.op === 'message');
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  const bye = await c.next((f) => f.op === 'disconnect');
  t.equal(bye.reconnect, true, 'clients are told to reconnect');
  t.equal((await c.waitClose()).code, 1012);
  t.equal(await exited, 0, 'clean exit');
  t.equal((out.match(/API key/g) ?? []).length, 1, 'key printed once');
});
