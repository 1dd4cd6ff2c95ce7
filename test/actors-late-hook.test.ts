// A hook that outlives its deadline: the client was answered actor_timeout and the mailbox moved on, so
// what the hook does through ctx afterwards (broadcast, push, timers, compute, kick, a new state) is
// refused; it would otherwise act in another message's turn, and publish what its sender was told failed.
import t from 'tap';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { until } from './helpers/redis.js';

const ACTOR = `import { defineActor } from 'rt-actors';
let late: string[] = [];
export default defineActor<{ n: number }>({
  match: 'late-*',
  init: () => ({ n: 0 }),
  async onMessage(ctx, msg, from) {
    if (msg.event === 'slow') {
      await new Promise((r) => setTimeout(r, 600)); // past the 200 ms deadline
      const tries: Array<() => unknown> = [
        () => ctx.broadcast('late', 1),
        () => ctx.push(from.socketId, 'late-push', 1),
        () => ctx.pushUser('u', 'late-push', 1),
        () => ctx.timers.after('late-timer', 1),
        () => ctx.kick(from.socketId, 'late'),
        () => { ctx.state = { n: 99 }; },
      ];
      late = tries.map((f) => { try { f(); return 'done'; } catch (err) { return (err as { code?: string }).code ?? String(err); } });
      return { reply: 'late' };
    }
    if (msg.event === 'destructure') {
      const { broadcast, push, subscriberCount } = ctx; // as on a plain object
      broadcast('d', subscriberCount());
      push(from.socketId, 'dp', 1);
      return { reply: 'ok' };
    }
    if (msg.event === 'status') return { reply: { late, n: ctx.state.n, timers: ctx.timers.has('late-timer') } };
    return undefined;
  },
  onTimer(ctx) { ctx.broadcast('timer-fired', 1); },
});
`;

t.test("a timed-out hook's later ctx calls are refused: nothing is published, pushed, kicked or scheduled, the state stays", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-actors-late-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'late.ts'), ACTOR);
  const s = await startServer(t, { actors: dir, actorHookTimeout: 0.2 });
  const c = await TestClient.connect(s.url + '/ws');
  const watcher = await TestClient.connect(s.url + '/ws');
  t.teardown(() => (c.close(), watcher.close()));
  t.equal((await c.request({ op: 'subscribe', channel: 'late-1' })).ok, true);
  t.equal((await watcher.request({ op: 'subscribe', channel: 'late-1' })).ok, true);
  const slow = await c.request({ op: 'publish', channel: 'late-1', event: 'slow', data: 1 });
  t.equal(slow.error?.code, 'actor_timeout', 'the sender is told its publish failed');
  let status: any;
  await until('the late hook to run', async () => {
    status = (await watcher.request({ op: 'publish', channel: 'late-1', event: 'status', data: 1 })).data;
    return status.late.length > 0 || undefined;
  }, 10_000);
  t.same(status.late, Array(6).fill('actor_timeout'), 'every effect the late hook tried was refused');
  t.equal(status.n, 0, 'ctx.state was not replaced');
  t.equal(status.timers, false, 'no timer was set');
  t.equal((await api(s.http, '/api/publish', { channel: 'late-1', event: 'sentinel', data: 1 })).status, 200);
  await c.next((f) => f.op === 'message' && f.event === 'sentinel');
  t.same(c.frames.filter((f) => f.op === 'message' && f.event !== 'sentinel').map((f) => f.event), [], 'no late broadcast, push or timer event');
  t.notOk(c.frames.some((f) => f.op === 'kicked'), 'not kicked');
  t.equal((await c.request({ op: 'publish', channel: 'late-1', event: 'destructure', data: 1 })).data, 'ok', 'a hook that destructures ctx works');
  t.equal((await c.next((f) => f.op === 'message' && f.event === 'd')).data, 2);
  await c.next((f) => f.op === 'message' && f.event === 'dp');
});
