// SIGTERM / SIGINT to whatever process a user started (`npx rt-actors start`, `node_modules/.bin/rt-actors
// start`, `node node_modules/rt-actors/bin/rt-actors.js start`) stops the server, drained: connected
// clients are told to reconnect (close 1012), the port closes, and no process of the tree is left.
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanEnv, listeningPort, portOpen, runCli } from './helpers/cli.js';
import { until } from './helpers/redis.js';
import { TestClient } from './helpers/ws-client.js';

// Six servers started and stopped one after another: longer than .taprc's default on a busy machine.
t.setTimeout(240_000);

const repo = fileURLToPath(new URL('..', import.meta.url));
const distIndex = join(repo, 'dist/src/index.js');

/** An application that depends on rt-actors, laid out as `npm install` lays it out (a linked install). */
function appDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rt-app-'));
  mkdirSync(join(dir, 'node_modules/.bin'), { recursive: true });
  symlinkSync(repo.replace(/\/$/, ''), join(dir, 'node_modules/rt-actors'));
  symlinkSync('../rt-actors/bin/rt-actors.js', join(dir, 'node_modules/.bin/rt-actors'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, dependencies: { 'rt-actors': `file:${repo}` } }));
  return dir;
}

/** Every live descendant of `pid` (from /proc); zombies count as gone. */
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state !== 'Z') parentOf.set(Number(d), Number(ppid));
    } catch {
      /* exited while we looked */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parentOf) if (pp === p) (out.push(c), walk(c));
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const dir = appDir();
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const ARGS = ['start', '--port=0', '--host=127.0.0.1', '--workers=2'];

/**
 * `group`: the signal goes to the whole process group, as Ctrl-C in a terminal sends it. SIGINT sent to
 * npm's pid alone cannot reach the server: npm forwards it to its `sh -c`, which ignores SIGINT while it
 * waits for a command (docs/deployment.md says so); SIGTERM to npm's pid alone is handled.
 */
const COMMANDS: { name: string; cmd: string; args: string[]; signal: NodeJS.Signals; cwd: string; group?: boolean }[] = [
  { name: 'npx rt-actors start', cmd: 'npx', args: ['rt-actors', ...ARGS], signal: 'SIGTERM', cwd: dir },
  { name: 'npx rt-actors start (Ctrl-C)', cmd: 'npx', args: ['rt-actors', ...ARGS], signal: 'SIGINT', cwd: dir, group: true },
  { name: 'npx rt-actors start in a clone', cmd: 'npx', args: ['rt-actors', ...ARGS], signal: 'SIGTERM', cwd: repo },
  { name: 'node_modules/.bin/rt-actors start', cmd: join(dir, 'node_modules/.bin/rt-actors'), args: ARGS, signal: 'SIGTERM', cwd: dir },
  { name: 'node_modules/.bin/rt-actors start', cmd: join(dir, 'node_modules/.bin/rt-actors'), args: ARGS, signal: 'SIGINT', cwd: dir },
  { name: 'node node_modules/rt-actors/bin/rt-actors.js start', cmd: process.execPath, args: ['node_modules/rt-actors/bin/rt-actors.js', ...ARGS], signal: 'SIGTERM', cwd: dir },
];

for (const c of COMMANDS) {
  t.test(`${c.signal} to ${c.group ? 'the process group of ' : ''}${c.name} drains and stops everything`, async (t) => {
    // npx installs the clone into its cache as a link, and npm prepares what it links: the build must
    // leave an up-to-date dist/ alone, as other tests (and servers) are running from it.
    const built = statSync(distIndex).mtimeMs;
    // Its own process group, so the teardown can take down whatever a failure leaves behind.
    const p = runCli(t, c.cmd, c.args, { cwd: c.cwd, env: cleanEnv(), detached: true });
    const port = await listeningPort(p, 60_000);
    t.equal(statSync(distIndex).mtimeMs, built, 'dist/ was not rebuilt under the running suite');
    const pid = p.child.pid!;
    const tree = descendants(pid);
    t.teardown(() => {
      for (const q of tree) if (alive(q)) process.kill(q, 'SIGKILL');
    });
    const client = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
    await client.request({ op: 'subscribe', channel: 'signals' });

    process.kill(c.group ? -pid : pid, c.signal);
    const bye = await client.next((f) => f.op === 'disconnect', 20_000);
    t.equal(bye.reconnect, true, 'the client is told to reconnect');
    t.equal((await client.waitClose()).code, 1012, 'close code 1012 (service restart)');
    await p.exited;
    await until('the port to close', async () => !(await portOpen(port)), 20_000);
    await until(`every process of the tree to end (${[pid, ...tree].join(', ')})`, () => [pid, ...tree].every((q) => !alive(q)), 20_000);
    t.pass(`${c.name}: port ${port} closed, ${tree.length + 1} process(es) gone`);
  });
}
