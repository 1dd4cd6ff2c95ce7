// ctx.compute: a task module in the actors folder runs on the piscina compute pool; the result comes
// back through the actor's mailbox; failures come back as results; /metrics counts the tasks.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

const fixtures = fileURLToPath(new URL('./fixtures/compute', import.meta.url));

t.test('a compute task runs off the shard and its result reaches the actor', async (t) => {
  const s = await startServer(t, { actors: fixtures, actorComputeThreads: 1 });
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'crunch-1' })).ok, true);
  const r = await c.request({ op: 'publish', channel: 'crunch-1', event: 'primes', data: 100_000 });
  t.same(r.data, { queued: true });
  const res = await c.next((f) => f.event === 'result', 20_000);
  t.same(res.data, { task: 'primes', value: 9592 });
  await c.request({ op: 'publish', channel: 'crunch-1', event: 'primes', data: -1 });
  const failed = await c.next((f) => f.event === 'result', 20_000);
  t.same(failed.data, { task: 'primes', error: 'task_failed' }, 'a task that throws comes back as a failed result');
  await c.request({ op: 'publish', channel: 'crunch-1', event: 'nosuch', data: 1 });
  const missing = await c.next((f) => f.event === 'result', 20_000);
  t.same(missing.data, { task: 'nosuch', error: 'not_found' });
  const deadline = Date.now() + 5000;
  let n = 0;
  while (Date.now() < deadline) {
    const text = await (await fetch(s.http + '/metrics')).text();
    n = Number(/^rt_actor_compute_tasks_total (\d+)/m.exec(text)?.[1] ?? 0);
    if (n >= 3) break;
    await new Promise((res2) => setTimeout(res2, 50));
  }
  t.equal(n, 3, 'tasks counted in /metrics');
});

t.test('a task whose result or error cannot cross threads is answered with a message that says so, not "undefined"', async (t) => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'rt-actors-compute-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'odd.task.ts'), `export default function odd(kind: string): unknown {\n  if (kind === 'throw-string') throw 'plain string';\n  return () => 1;\n}\n`);
  writeFileSync(join(dir, 'asker.ts'), `import { defineActor } from 'rt-actors';
export default defineActor({
  match: 'odd-*',
  onMessage(ctx, msg, from) { ctx.compute('odd', msg.data, from.socketId); return { reply: true }; },
  onComputed(ctx, r) { ctx.push(r.tag!, 'result', r.ok ? 'ok' : r.error); },
});
`);
  const s = await startServer(t, { actors: dir, actorComputeThreads: 1 });
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'odd-1' })).ok, true);
  await c.request({ op: 'publish', channel: 'odd-1', event: 'x', data: 'function' });
  const fn = await c.next((f) => f.event === 'result', 20_000);
  t.equal(fn.data.code, 'task_failed');
  t.match(fn.data.message, /compute task odd failed: its result cannot be sent between threads/);
  await c.request({ op: 'publish', channel: 'odd-1', event: 'x', data: 'throw-string' });
  const str = await c.next((f) => f.event === 'result' && f !== fn, 20_000);
  t.equal(str.data.message, 'compute task odd failed: plain string');
});

t.test('a task file that does not compile stops the start naming its line; a JavaScript actor and task outside the project import rt-actors and TypeScript helpers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-compute-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files: Record<string, string> = {
    'crunch.mjs': `import { defineActor } from 'rt-actors';
export default defineActor({
  match: 'crunch-*',
  onMessage(ctx, msg, from) {
    ctx.compute(msg.event, msg.data, from.socketId);
    return { reply: { queued: true } };
  },
  onComputed(ctx, r) {
    ctx.push(r.tag, 'result', r.ok ? { value: r.value } : { error: r.error.code, message: r.error.message });
  },
});
`,
    'broken.task.ts': `export default function broken(n: number): number {\n  return n +;\n}\n`,
    // The computed import() finds the copy compiled for the static one, in the compute thread too.
    'double.task.mjs': `import { double } from './lib/double.js';\nexport default async (n) => (await import('./lib/' + 'double.js')).double === double ? double(n) : 'another instance';\n`,
    'lib/double.ts': `export const double = (n: number): number => n * 2;\n`,
  };
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  // As an actor file's would (docs/actors.md, "The folder"): not a failure of every call, found later.
  await t.rejects(startServer(t, { actors: dir, actorComputeThreads: 1 }), { code: 'config_invalid', message: /broken\.task\.ts:2:\d+: Expression expected/ }, 'the start names the file and line');
  writeFileSync(join(dir, 'broken.task.ts'), `import missing from 'no-such-package';\nexport default (n: number): number => missing(n);\n`);
  await t.rejects(startServer(t, { actors: dir, actorComputeThreads: 1 }), { message: /broken\.task\.ts: Cannot find package 'no-such-package'/ }, 'a missing import too');
  rmSync(join(dir, 'broken.task.ts'));
  const s = await startServer(t, { actors: dir, actorComputeThreads: 1 });
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'crunch-1' })).ok, true, 'the .mjs actor loaded');
  await c.request({ op: 'publish', channel: 'crunch-1', event: 'double', data: 21 });
  t.same((await c.next((f) => f.event === 'result', 20_000)).data, { value: 42 }, 'a JavaScript task imports a TypeScript helper');
});
