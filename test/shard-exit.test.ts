// process.exit() called on a shard's thread (by an actor, a request handler, or a library of theirs) is
// a crash of that shard like an uncaught error (docs/deployment.md#crashes-and-overload-between-threads):
// the shard is replaced, the process keeps serving, and the request that made the call runs only once.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { startServer, api, API_KEY } from './helpers/server.js';
import { FAULT_ACTORS, channelOwnedBy, listenProbe, until } from './helpers/faults.js';
import { cleanEnv, listeningPort, runCli } from './helpers/cli.js';

t.setTimeout(120_000);

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));

t.test('process.exit() in a hook run for a socket of the shard itself: the shard is replaced, the process lives on', async (t) => {
  // One shard: the HTTP request and the channel's actor are on the same thread, the case that aborted
  // the whole process (a thread that ends with its uWS handles open).
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', `--actors=${FAULT_ACTORS}`, `--api-key=${API_KEY}`, '--log-level=info'], { env: cleanEnv() });
  const port = await listeningPort(p, 60_000);
  const http = `http://127.0.0.1:${port}`;
  const answer = await api(http, '/api/publish', { channel: 'probe-exit', event: 'exit', data: { tag: 'own' } }).catch((err: Error) => ({ status: 0, body: `${err.message} (${(err.cause as Error)?.message})` }));
  t.equal(answer.status, 500, `the publish is answered (${JSON.stringify(answer.body)})`);
  t.match(answer.body, { error: { code: 'actor_failed' } });
  await p.waitFor(/shard 0 crashed: process\.exit\(3\) called in shard 0/);
  await p.waitFor(/shard 0 replaced by a new thread/);
  const health = await until(async () => {
    const h = await api(http, '/health', undefined, { key: null });
    return h.status === 200 ? h : undefined;
  }, 'healthy again', 30_000);
  t.equal(health.body.workers.alive, 1, 'the replacement serves');
  t.equal((await api(http, '/api/publish', { channel: 'probe-exit', event: 'after', data: null })).status, 200, 'and takes publishes');
  p.child.kill('SIGTERM');
  t.same(await p.exited, { code: 0, signal: null }, 'the process was never aborted: it drains and exits 0');
});

t.test('process.exit() in a hook run for another thread: the replacement does not run that request again', async (t) => {
  const probe = listenProbe(t);
  const s = await startServer(t, { actors: FAULT_ACTORS });
  const channel = channelOwnedBy('probe-', 0, 2);
  // From the main thread, through its ring to shard 0.
  const failed = await s.publish(channel, 'exit', { tag: 'ring' }).then(
    () => undefined,
    (err: Error & { code?: string }) => err,
  );
  t.match(failed, { code: 'actor_failed' }, 'the publish fails: its hook did not complete');
  const first = await probe.next((x) => x.exiting === 'ring');
  await until(async () => (await api(s.http, '/health', undefined, { key: null })).body.workers?.alive === 2, 'shard 0 replaced', 30_000);
  // Rings are FIFO: a request left unread for the replacement would come before this one.
  const after = await s.publish(channel, 'report', { tag: 'after' });
  t.ok(after.offset > 0, 'the replacement answers the next publish');
  t.same(
    probe.signals.filter((x) => x.exiting === 'ring').map((x) => x.threadId),
    [first.threadId],
    'the exiting hook ran once, on the thread that was replaced',
  );
});

t.test('a shard that dies while the server starts fails the start: exit 1 and the reason, not a silent exit 0', async (t) => {
  // The supervisor then stopped the shards and waited for the dead one's drain reply, with nothing
  // left keeping the process alive: it exited 0, as after a clean shutdown, and said nothing more.
  const actors = fileURLToPath(new URL('./fixtures/worker-start-crash', import.meta.url));
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', `--actors=${actors}`, `--api-key=${API_KEY}`], { env: cleanEnv() });
  const { code } = await p.exited;
  t.equal(code, 1, `exit 1 (unexpected error), not 0\n${p.output()}`);
  t.match(p.output(), /rt-actors: unexpected error: .*this actor refuses to load in a shard/, 'the start-failed line names the reason');
});
