// A shard stuck in a synchronous actor hook cannot be interrupted. The supervisor notices that its event
// loop stands still (--stuck-shard-timeout), logs which hook, actor file and channel hold it, answers
// /health 503 (degraded) and rt_stuck_shards 1 while it lasts, and says so when it moves again. On
// SIGTERM with a shard still stuck it says why the process is about to abort before it does.
// Real `rt-actors start` processes: the second test ends in the abort it describes.
import t, { type Test } from 'tap';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ownerOf } from '../src/runtime/hash.js';
import { listeningPort, runCli } from './helpers/cli.js';
import { until } from './helpers/redis.js';
import { TestClient } from './helpers/ws-client.js';

t.setTimeout(120_000);

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
const actors = fileURLToPath(new URL('./fixtures/stuck', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'rt-stuck-'));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

function start(t: Test, extra: string[] = []) {
  return runCli(t, process.execPath, [bin, 'start', '--port', '0', '--host', '127.0.0.1', '--workers', '2', '--actors', actors, '--stuck-shard-timeout', '1', ...extra]);
}

/**
 * GET on a connection of its own, closed after the answer (the acceptor hands each new one to the next
 * shard); undefined when a stuck shard does not answer.
 */
function get(port: number, path: string): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 400 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('timeout', () => (req.destroy(), resolve(undefined)));
    req.on('error', () => resolve(undefined));
  });
}

/** Clients until one is on each shard (socket ids are `<shard>.<n>`), so both shards hold sockets. */
async function clientsOnBothShards(t: Test, port: number): Promise<TestClient[]> {
  const out: TestClient[] = [];
  const shards = new Set<string>();
  for (let i = 0; i < 8 && shards.size < 2; i++) {
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
    t.teardown(() => c.close());
    out.push(c);
    shards.add(String(c.welcome.socket_id).split('.')[0]);
  }
  t.equal(shards.size, 2, 'a client on each shard');
  return out;
}

t.test('a shard stuck in a hook is named, /health says degraded, and it is reported when it moves again', async (t) => {
  const cli = start(t);
  const port = await listeningPort(cli);
  const [c] = await clientsOnBothShards(t, port);
  const channel = 'stuck-one';
  const owner = ownerOf(channel, 2);
  t.equal((await c!.request({ op: 'subscribe', channel })).ok, true);
  const release = join(scratch, 'release-one');
  const answered = c!.request({ op: 'publish', channel, event: 'hold', data: { release } }, 60_000);

  const stuck = await cli.waitFor(/shard (\d) is stuck: its event loop has not turned for [\d.]+ s, running (\S+) of actor (\S+) for channel (\S+) \(for [\d.]+ s\)/);
  t.equal(Number(stuck[1]), owner, 'the channel owner is the shard reported');
  t.equal(stuck[2], 'onMessage', 'the hook is named');
  t.equal(stuck[3], join(actors, 'stuck.ts'), "the actor's file is named");
  t.equal(stuck[4], channel, 'the channel is named');

  // Any shard but the stuck one answers for the host.
  const health = await until('/health 503 from the shard that still runs', async () => {
    const r = await get(port, '/health');
    return r?.status === 503 ? JSON.parse(r.body) : undefined;
  });
  t.equal(health.status, 'degraded');
  t.same(health.workers, { total: 2, alive: 2, stuck: 1 }, 'one shard stuck, none dead');
  await until('rt_stuck_shards 1', async () => /^rt_stuck_shards 1$/m.test((await get(port, '/metrics'))?.body ?? ''));

  writeFileSync(release, '');
  t.same((await answered).data, { released: true }, 'the hook returned and its sender got the reply');
  const resumed = await cli.waitFor(new RegExp(`shard ${owner} is moving again after ([\\d.]+) s stuck`));
  t.ok(Number(resumed[1]) >= 1, `stuck for ${resumed[1]} s, at least --stuck-shard-timeout`);
  const ok = await until('/health 200 again', async () => {
    const r = await get(port, '/health');
    return r?.status === 200 ? JSON.parse(r.body) : undefined;
  });
  t.same(ok.workers, { total: 2, alive: 2, stuck: 0 });
  t.match((await get(port, '/metrics'))?.body, /^rt_stuck_shards 0$/m);
  t.equal(cli.output().match(/ is stuck: /g)?.length, 1, 'reported once, not at every check');
});

t.test('a shard stuck in a request handler is named too', async (t) => {
  const cli = start(t);
  const port = await listeningPort(cli);
  const c = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
  t.teardown(() => c.close());
  const shard = Number(String(c.welcome.socket_id).split('.')[0]);
  const release = join(scratch, 'release-handler');
  const answered = c.request({ op: 'rpc', event: 'hold', data: { release } }, 60_000);
  const stuck = await cli.waitFor(/shard (\d) is stuck: its event loop has not turned for [\d.]+ s, running (.+?) \(for [\d.]+ s\)\./);
  t.equal(Number(stuck[1]), shard, "the client's own shard runs its handler");
  t.equal(stuck[2], `the handler of event "hold" (namespace /) of ${join(actors, 'hold.handlers.ts')}`, 'the handler, its namespace and file are named');
  writeFileSync(release, '');
  t.same((await answered).data, { released: true });
  await cli.waitFor(new RegExp(`shard ${shard} is moving again`));
});

t.test('SIGTERM with a shard stuck for good: the log says why before the process aborts', async (t) => {
  const cli = start(t, ['--shutdown-timeout', '0']);
  const port = await listeningPort(cli);
  const [c] = await clientsOnBothShards(t, port);
  const channel = 'stuck-forever';
  t.equal((await c!.request({ op: 'subscribe', channel })).ok, true);
  c!.send({ op: 'publish', channel, event: 'hold', data: { release: join(scratch, 'never') }, ref: 99 });
  await cli.waitFor(/shard \d is stuck: /);
  cli.child.kill('SIGTERM');
  const end = await cli.exited;
  const out = cli.output();
  const why = new RegExp(`shard ${ownerOf(channel, 2)} did not stop within --shutdown-timeout: it is stuck, running onMessage of actor \\S+stuck\\.ts for channel ${channel} \\(for [\\d.]+ s\\)\\. It holds [1-9]\\d* client connections?, and a thread holding open sockets cannot be ended cleanly: the process aborts \\(exit status 134\\)`);
  t.match(out, why, 'the stuck shard, its hook and the abort to come are logged');
  t.ok(end.signal === 'SIGABRT' || end.code === 134, `the process aborted (${JSON.stringify(end)})`);
  const fatal = out.indexOf('FATAL ERROR');
  t.ok(fatal === -1 || out.search(why) < fatal, "the explanation comes before V8's own message");
});

t.test('SIGTERM with a stuck shard that holds no connection: it is ended and the process exits cleanly', async (t) => {
  const cli = start(t, ['--shutdown-timeout', '0']);
  const port = await listeningPort(cli);
  const channel = 'stuck-alone';
  const owner = ownerOf(channel, 2);
  const clients = await clientsOnBothShards(t, port);
  const onOwner = clients.filter((c) => String(c.welcome.socket_id).startsWith(`${owner}.`));
  const other = clients.find((c) => !onOwner.includes(c))!;
  for (const c of onOwner) c.close();
  await until(`no connection left on shard ${owner}`, async () => {
    // Not fetch: its keep-alive connection could stay open on the owner shard, which would then hold a socket.
    const r = await get(port, '/api/stats?api_key=install-test-key');
    const stats = r && (JSON.parse(r.body) as { threads: { thread: string; connections: number }[] });
    return stats?.threads.find((th) => th.thread === String(owner))?.connections === 0;
  });
  t.equal((await other.request({ op: 'subscribe', channel })).ok, true);
  other.send({ op: 'publish', channel, event: 'hold', data: { release: join(scratch, 'never-alone') }, ref: 99 });
  await cli.waitFor(new RegExp(`shard ${owner} is stuck: `));
  cli.child.kill('SIGTERM');
  const end = await cli.exited;
  t.match(cli.output(), new RegExp(`shard ${owner} did not stop within --shutdown-timeout: it is stuck, running onMessage of actor \\S+stuck\\.ts for channel ${channel} \\(for [\\d.]+ s\\)\\. It holds no client connection, so it is ended where it stands`));
  t.same(end, { code: 0, signal: null }, 'the process exited 0, not aborted');
});

t.test("a stuck shard does not hold /api/stats (the dashboard's feed) until --request-timeout", async (t) => {
  const key = 'stats-key-0123456789';
  const cli = start(t, ['--dashboard', '--api-key', key]);
  const port = await listeningPort(cli);
  const [c] = await clientsOnBothShards(t, port);
  const stats = (timeout: number) =>
    new Promise<{ ms: number; body: any } | undefined>((resolve) => {
      const t0 = Date.now();
      const req = http.get({ host: '127.0.0.1', port, path: '/api/stats', agent: false, timeout, headers: { authorization: `Bearer ${key}` } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(res.statusCode === 200 ? { ms: Date.now() - t0, body: JSON.parse(body) } : undefined));
      });
      req.on('timeout', () => (req.destroy(), resolve(undefined)));
      req.on('error', () => resolve(undefined));
    });
  const channel = 'stuck-stats';
  t.equal((await c!.request({ op: 'subscribe', channel })).ok, true);
  const before = await until('the stats list the channel', async () => {
    const s = await stats(5000);
    return s?.body.topChannels.some((ch: { name: string }) => ch.name === channel) ? s : undefined;
  });
  t.ok(before, 'the channel is among the busiest');

  const release = join(scratch, 'release-stats');
  const answered = c!.request({ op: 'publish', channel, event: 'hold', data: { release } }, 60_000);
  t.teardown(() => writeFileSync(release, ''));
  await cli.waitFor(/shard \d is stuck/);
  // Past the 5 s the list is kept, the next answer asks the owners again: the stuck one cannot answer.
  await new Promise((r) => setTimeout(r, 5500));
  // The shard that still runs answers (a request handed to the stuck one gets nothing: given up on at 5 s).
  const during = await until('an answer from the shard that runs', () => stats(5000), 30_000);
  t.ok(during.ms < 3000, `answered in ${during.ms} ms, not at --request-timeout (15 s)`);
  t.equal(during.body.status, 'degraded');
  t.same(during.body.workers, { total: 2, alive: 2, stuck: 1 });
  // The last list this shard read (each shard keeps its own): which one that is depends on who answered before.
  t.ok(Array.isArray(during.body.topChannels), 'with the last list of busiest channels it read');

  writeFileSync(release, '');
  t.same((await answered).data, { released: true });
});
