// `rt-actors health`, as Docker's HEALTHCHECK runs it: the configuration `start` reads decides where it
// asks, and the exit code says healthy (0) or not (1, never Docker's reserved 2).
import t from 'tap';
import { spawn } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startServer } from './helpers/server.js';
import { selfSignedCert } from './helpers/tls.js';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));

function health(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, 'health', ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

/** A port nothing listens on: bound, then released. */
async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

t.test('healthy server: exit 0, by flag and by RT_PORT', async (t) => {
  const s = await startServer(t, { workers: 1 });
  const byFlag = await health([`--port=${s.port}`]);
  t.equal(byFlag.code, 0, byFlag.err);
  t.match(byFlag.out, new RegExp(`http://127\\.0\\.0\\.1:${s.port}/health: 200 ok`));
  const byEnv = await health([], { RT_PORT: String(s.port), RT_HOST: '127.0.0.1' });
  t.equal(byEnv.code, 0, byEnv.err);
});

t.test('nothing listening, or a bad option: exit 1 with the reason', async (t) => {
  const port = await freePort();
  const down = await health([`--port=${port}`]);
  t.equal(down.code, 1);
  t.match(down.err, /no answer ECONNREFUSED/);
  const bad = await health(['--prot=1']);
  t.equal(bad.code, 1, 'not 2, which Docker reserves');
  t.match(bad.err, /unknown option --prot/);
});

t.test('a draining server is not healthy', async (t) => {
  const s = await startServer(t, { workers: 1, shutdownTimeout: 2000 });
  const stopped = s.close();
  const r = await health([`--port=${s.port}`]);
  await stopped;
  // Either the server still answered (503 draining) or it was already gone: both are "not healthy".
  t.equal(r.code, 1, r.out + r.err);
});

t.test('with --tls-cert it asks over https', async (t) => {
  const { key, cert } = selfSignedCert();
  const s = await startServer(t, { workers: 1, tlsCert: cert, tlsKey: key });
  const r = await health([`--port=${s.port}`, `--tls-cert=${cert}`, `--tls-key=${key}`]);
  t.equal(r.code, 0, r.err);
  t.match(r.out, new RegExp(`https://127\\.0\\.0\\.1:${s.port}/health: 200 ok`));
  // Without the TLS options, the plain-HTTP probe of a TLS port gets no health answer.
  t.equal((await health([`--port=${s.port}`])).code, 1);
});
