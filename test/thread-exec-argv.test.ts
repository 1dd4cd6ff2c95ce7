// threadExecArgv (createServer): the Node options the server's threads start with. By default Node's
// (the embedding process's own, loaders included); given, exactly those, in the shards and in the
// actor compute pool alike.
import t, { type Test } from 'tap';
import { fileURLToPath } from 'node:url';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

const actors = fileURLToPath(new URL('./fixtures/exec-argv', import.meta.url));

async function threadArgv(t: Test, url: string): Promise<{ shard: unknown; compute: unknown }> {
  const c = await TestClient.connect(url + '/ws');
  try {
    t.equal((await c.request({ op: 'subscribe', channel: 'argv-1' })).ok, true);
    const shard = (await c.request({ op: 'publish', channel: 'argv-1', event: 'shard', data: null })).data as { execArgv: unknown };
    await c.request({ op: 'publish', channel: 'argv-1', event: 'compute', data: null });
    const compute = (await c.next((f) => f.event === 'compute', 20_000)).data as { execArgv: unknown };
    return { shard: shard.execArgv, compute: compute.execArgv };
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
