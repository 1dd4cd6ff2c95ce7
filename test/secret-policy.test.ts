// A short HS256 secret is warned about (refused with NODE_ENV=production), at start and by `token`; a short API key is warned about; `token --ttl` must be positive.
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20000 });

t.test('token --ttl 0 or negative is refused with a clear error', async (t) => {
  for (const ttl of ['0', '0s', '-5', '-1h']) {
    const r = run(['token', '--sub', '1', '--secret', 'x'.repeat(40), '--ttl', ttl]);
    t.equal(r.status, 2, `--ttl ${ttl} exits 2`);
    t.match(r.stderr, /--ttl.*positive duration/, `--ttl ${ttl} says why`);
    t.equal(r.stdout, '', 'no token printed');
  }
  const ok = run(['token', '--sub', '1', '--secret', 'x'.repeat(40), '--ttl', '1s']);
  t.equal(ok.status, 0);
  t.match(ok.stdout.trim(), /^[\w-]+\.[\w-]+\.[\w-]+$/);
});

t.test('a jwt secret shorter than 32 bytes is refused when NODE_ENV=production', async (t) => {
  const r = run(['start', '--port=0', '--host=127.0.0.1', '--workers=1', '--jwt-secret=short-secret'], { NODE_ENV: 'production', RT_API_KEY: 'k' });
  t.equal(r.status, 2);
  t.match(r.stderr, /jwt-secret.*12 bytes.*at least 32.*NODE_ENV=production/);
});

/** Starts a server with `args` and `env`, and resolves with what it printed up to its listening line. */
async function startOutput(t: Test, args: string[], env: Record<string, string>): Promise<string> {
  const child = spawn(process.execPath, [bin, 'start', '--workers=1', '--port=0', '--host=127.0.0.1', '--log-level=warn', ...args], { env: { ...process.env, NODE_ENV: 'development', ...env } });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const deadline = Date.now() + 20000;
  while (!/listening on 127\.0\.0\.1:\d+/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('server did not start: ' + out);
    await new Promise((r) => setTimeout(r, 50));
  }
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
  return out;
}

t.test('a jwt secret shorter than 32 bytes is warned about otherwise, and the server starts', async (t) => {
  t.match(await startOutput(t, ['--jwt-secret=short-secret'], { RT_API_KEY: 'k' }), /WARN.*12 bytes; use at least 32 random bytes/);
});

t.test('an API key shorter than 16 characters is warned about at start, like a short jwt secret', async (t) => {
  t.match(await startOutput(t, ['--api-key=abc'], {}), /WARN.*API key \(--api-key \/ RT_API_KEY\) is 3 characters; use at least 16 random characters/);
  t.match(await startOutput(t, [], { RT_API_KEY: 'short-key' }), /API key .* is 9 characters/, 'from RT_API_KEY too');
  // The warning comes before the listening line, so its absence there is final.
  t.notMatch(await startOutput(t, [`--api-key=${'k'.repeat(16)}`], {}), /API key/, 'a 16-character key is not warned about');
});

t.test('a dashboard token shorter than 16 characters is warned about at start, like a short API key', async (t) => {
  const key = `--api-key=${'k'.repeat(16)}`;
  t.match(await startOutput(t, [key, '--dashboard', '--dashboard-token=abc'], {}), /WARN.*dashboard token \(--dashboard-token \/ RT_DASHBOARD_TOKEN\) is 3 characters; use at least 16 random characters/);
  t.match(await startOutput(t, [key, '--dashboard'], { RT_DASHBOARD_TOKEN: 'short-token' }), /dashboard token .* is 11 characters/, 'from RT_DASHBOARD_TOKEN too');
  // The warning comes before the listening line, so its absence there is final.
  t.notMatch(await startOutput(t, [key, '--dashboard', `--dashboard-token=${'d'.repeat(16)}`], {}), /dashboard token/, 'a 16-character token is not warned about');
});

t.test('token --secret <short> prints the warning start gives for that secret, and still mints', async (t) => {
  const short = run(['token', '--sub', '1', '--secret', 'short-secret'], { NODE_ENV: 'production' });
  t.equal(short.status, 0);
  t.match(short.stderr, /^rt-actors: warning: the HS256 secret \(--jwt-secret \/ RT_JWT_SECRET\) is 12 bytes; use at least 32 random bytes/);
  t.match(short.stdout.trim(), /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const configured = run(['token', '--sub', '1'], { RT_JWT_SECRET: 'from-env' });
  t.match(configured.stderr, /is 8 bytes/, 'a configured secret too');
  const long = run(['token', '--sub', '1', '--secret', 'x'.repeat(32)]);
  t.equal(long.status, 0);
  t.equal(long.stderr, '', 'no warning for a 32-byte secret');
});
