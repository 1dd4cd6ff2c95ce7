// threadExecArgv (createServer): the Node options the server's threads start with. By default Node's
// (the embedding process's own, loaders included); given, exactly those, in the shards and in the
// actor compute pool alike.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

const actors = fileURLToPath(new URL('./fixtures/exec-argv', import.meta.url));

async function threadArgv(t: Test, url: string): Promise<{ shard: unknown; compute: unknown; youngMb: unknown }> {
  const c = await TestClient.connect(url + '/ws');
  try {
    t.equal((await c.request({ op: 'subscribe', channel: 'argv-1' })).ok, true);
    const shard = (await c.request({ op: 'publish', channel: 'argv-1', event: 'shard', data: null })).data as { execArgv: unknown; youngMb: unknown };
    await c.request({ op: 'publish', channel: 'argv-1', event: 'compute', data: null });
    const compute = (await c.next((f) => f.event === 'compute', 20_000)).data as { execArgv: unknown };
    return { shard: shard.execArgv, compute: compute.execArgv, youngMb: shard.youngMb };
  } finally {
    c.close();
  }
}

t.test('given, the threads start with exactly those options', async (t) => {
  const s = await startServer(t, { actors, actorComputeThreads: 1, threadExecArgv: ['--enable-source-maps'] });
  const got = await threadArgv(t, s.url);
  t.same(got.shard, ['--enable-source-maps'], 'the shard');
  t.same(got.compute, ['--enable-source-maps'], 'the compute thread');
});

t.test("by default, the process's own (here tap's loaders)", async (t) => {
  t.ok(process.execArgv.some((a) => a.startsWith('--import') || a.startsWith('--loader')), 'this test runs under module loaders');
  const s = await startServer(t, { actors, actorComputeThreads: 1, threadExecArgv: undefined });
  const got = await threadArgv(t, s.url);
  t.same(got.shard, process.execArgv, 'the shard');
  t.same(got.compute, process.execArgv, 'the compute thread');
});

// --shard-young-generation: V8 left alone grows a shard's young generation to 48 MB during a burst of
// connections and keeps the pages (docs/benchmarks.md, 2026-11-28); the shards start capped.
t.test("a shard's young generation: 24 MB by default, as set, or V8's own with 0", async (t) => {
  const def = await startServer(t, { actors, actorComputeThreads: 1 });
  t.equal((await threadArgv(t, def.url)).youngMb, 24, 'the default');
  const set = await startServer(t, { actors, actorComputeThreads: 1, shardYoungGeneration: '12mb' as never });
  t.equal((await threadArgv(t, set.url)).youngMb, 12, "'12mb'");
  const v8 = await startServer(t, { actors, actorComputeThreads: 1, shardYoungGeneration: 0 });
  t.ok(((await threadArgv(t, v8.url)).youngMb as number) > 24, "0: V8's own limit, larger");
  await t.rejects(startServer(t, { shardYoungGeneration: 'lots' as never }), { code: 'config_invalid', message: /shardYoungGeneration/ });
});

t.test('a value Node refuses: a clear error, and nothing of the failed start holds the process', async (t) => {
  await t.rejects(startServer(t, { threadExecArgv: '--enable-source-maps' as never }), { code: 'config_invalid', message: /threadExecArgv must be an array of Node options/ });
  await t.rejects(startServer(t, { threadExecArgv: [42] as never }), { code: 'config_invalid', message: /threadExecArgv/ });
  // A flag no worker may take fails in the Worker constructor; in a process of its own, so that a
  // handle left open by the failed start shows as a process that does not exit.
  const script = `import { createServer } from 'rt-actors';
try { await createServer({ port: 0, workers: 2, env: {}, logLevel: 'error', threadExecArgv: ['--max-old-space-size=64'] }); console.log('started'); }
catch (e) { console.log(e.code + ': ' + e.message); }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('..', import.meta.url)), encoding: 'utf8', timeout: 30_000 });
  t.match(r.stdout, /ERR_WORKER_INVALID_EXEC_ARGV: .*--max-old-space-size=64/, 'the error names the flag');
  t.equal(r.status, 0, `the process exits on its own after the failed start (${r.signal ?? 'exited'})`);
});
