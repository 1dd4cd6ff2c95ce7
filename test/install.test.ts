// A production install in a clean copy of the repository: exactly `npm install --omit=dev`, then the
// server starts from it and serves the browser bundle and /health. Uses the npm registry (and its cache).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanEnv, listeningPort, runCli } from './helpers/cli.js';

// npm install takes a minute or more on a busy machine: more than .taprc's default.
t.setTimeout(300_000);

const repo = fileURLToPath(new URL('..', import.meta.url));

t.test('npm install --omit=dev in a clean copy builds everything and serves /client.js', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-install-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The files a clone has: tracked ones (plus new, not yet committed ones while developing).
  const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repo, encoding: 'utf8' }).stdout.split('\0').filter(Boolean);
  t.ok(files.includes('package.json'), 'git lists the repository');
  for (const f of files) {
    if (!existsSync(join(repo, f))) continue; // deleted in the worktree, not yet committed
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    cpSync(join(repo, f), join(dir, f));
  }
  t.notOk(existsSync(join(dir, 'dist')), 'the copy starts without dist/');

  const install = spawnSync('npm', ['install', '--omit=dev'], { cwd: dir, env: cleanEnv(), encoding: 'utf8', timeout: 240_000 });
  t.equal(install.status, 0, `npm install --omit=dev succeeds\n${install.stdout}\n${install.stderr}`);
  t.notOk(existsSync(join(dir, 'node_modules/tap')), 'dev dependencies were not installed');
  for (const f of ['dist/src/index.js', 'dist/src/cli/main.js', 'dist/workers/shard.js', 'dist/client.js']) t.ok(existsSync(join(dir, f)), `${f} is built`);
  t.match(readFileSync(join(dir, 'dist/client.js'), 'utf8'), /globalThis\.RtActors/);

  const server = runCli(t, process.execPath, ['bin/rt-actors.js', 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--actors=./actors', '--dashboard'], { cwd: dir });
  const port = await listeningPort(server, 60_000);
  const bundle = await fetch(`http://127.0.0.1:${port}/client.js`);
  t.equal(bundle.status, 200, '/client.js is served');
  t.match(bundle.headers.get('content-type'), /javascript/);
  t.match(await bundle.text(), /RtActors/);
  const dashboard = await fetch(`http://127.0.0.1:${port}/dashboard/app.js`);
  t.equal(dashboard.status, 200, 'the dashboard (static/) is served from the install');
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  t.equal(health.status, 200);
  t.equal((await health.json()).status, 'ok');
  server.child.kill('SIGTERM');
  t.same(await server.exited, { code: 0, signal: null }, 'stops cleanly');
});
