// Failure semantics, deadlines, the bounded mailbox, timers and kicks of the actor runtime, through
// rt-actors/testing (the server's own ChannelActor, in memory, with a manual clock).
import t from 'tap';
import { ActorError, defineActor } from 'rt-actors';
import { testActor } from 'rt-actors/testing';

const code = (p: Promise<unknown>) => p.then(() => 'ok', (err: { code?: string }) => err.code);

t.test('a join refused or failing in onJoin leaves no subscriber and no presence member', async (t) => {
  let calls = 0;
  const def = defineActor<{ n: number }>({
    match: 'presence-room',
    init: () => ({ n: 0 }),
    authorize: () => true,
    onJoin(_ctx, who) {
      calls++;
      if (who.userId === 'mallory') throw new ActorError('banned', 'not you');
      if (who.userId === 'buggy') throw new TypeError('a bug');
      return { reply: { hello: who.userId } };
    },
  });
  const a = testActor(def);
  t.equal(await code(a.join({ userId: 'mallory' })), 'banned');
  t.equal(await code(a.join({ userId: 'buggy' })), 'actor_failed');
  t.equal(a.subscriberCount, 0, 'no ghost subscriber');
  t.same(a.members(), [], 'no ghost presence member');
  t.equal(a.stats.failures, 1, 'the bug is counted, the refusal is not');
  t.match(a.logs.join('\n'), /onJoin failed \(actor test\): a bug/, 'logged once with the actor file');
  const ok = await a.join({ userId: 'alice' });
  t.same(ok.reply, { hello: 'alice' });
  t.same(a.members(), [{ user_id: 'alice' }]);
  t.equal(calls, 3);
});

t.test('a failed onMessage publishes nothing it returns; what it broadcast before failing was published (docs/actors.md)', async (t) => {
  const def = defineActor<{ n: number }>({
    match: 'room',
    init: () => ({ n: 0 }),
    onMessage(ctx, msg) {
      ctx.broadcast('typing', { n: ++ctx.state.n });
      if (msg.event === 'bad') throw new ActorError('refused', 'no');
      return { event: 'said', data: msg.data };
    },
  });
  const a = testActor(def);
  const s = await a.join({ userId: 'u' });
  t.equal(await code(a.send(s, 'bad', 1)), 'refused');
  t.same(s.received.map((r) => r.event), ['typing'], 'the broadcast made before the refusal reached the subscriber');
  await a.send(s, 'ok', 2);
  t.same(a.publications.map((p) => p.event), ['typing', 'typing', 'said'], 'the refused message itself was never published');
});

t.test('a hook that never settles fails with actor_timeout and does not wedge the channel', async (t) => {
  const def = defineActor({
    match: 'slow',
    authorize: (_ctx, who) => (who.userId === 'stuck' ? new Promise<boolean>(() => {}) : true),
  });
  const a = testActor(def, { hookTimeoutMs: 3000 });
  const stuck = code(a.join({ userId: 'stuck' }));
  const next = a.join({ userId: 'next' });
  await a.advance(2999);
  t.equal(a.subscriberCount, 0, 'still waiting before the deadline');
  await a.advance(1);
  t.equal(await stuck, 'actor_timeout');
  const s = await next;
  t.equal(s.joined, true, 'the operation queued behind it ran');
  t.equal(a.stats.failures, 1);
});

t.test('a rejected onLeave is logged and counted; the leave still happens', async (t) => {
  const def = defineActor({ match: 'x', onLeave: async () => Promise.reject(new Error('boom')) });
  const a = testActor(def);
  const s = await a.join();
  await a.leave(s);
  t.equal(a.subscriberCount, 0);
  t.equal(a.stats.failures, 1);
  t.match(a.logs.join('\n'), /onLeave failed/);
});

t.test('the mailbox is bounded: beyond it operations fail with overloaded', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const def = defineActor({ match: 'busy', onMessage: async () => { await gate; } });
  const a = testActor(def, { mailboxSize: 2 });
  const s = await a.join();
  const first = a.send(s, 'm', 1); // running
  const queued = [a.send(s, 'm', 2), a.send(s, 'm', 3)]; // waiting: 2 = the bound
  t.equal(await code(a.send(s, 'm', 4)), 'overloaded');
  release();
  t.same(await Promise.all([first, ...queued].map(code)), ['ok', 'ok', 'ok'], 'what was accepted completes');
  t.same(a.publications.map((p) => p.data), [1, 2, 3]);
});

t.test('an actor whose hooks keep failing restarts with fresh state', async (t) => {
  const stops: string[] = [];
  const def = defineActor<{ n: number }>({
    match: 'flaky',
    init: () => ({ n: 0 }),
    onMessage(ctx, msg) {
      ctx.state.n++;
      if (msg.event === 'bad') throw new Error('corrupt');
      return { reply: ctx.state.n };
    },
    onStop: (_ctx, reason) => void stops.push(reason),
  });
  const a = testActor(def);
  const s = await a.join();
  t.same((await a.send(s, 'good', 0)).data, 1);
  for (let i = 0; i < 3; i++) t.equal(await code(a.send(s, 'bad', 0)), 'actor_failed');
  t.equal(a.stats.restarts, 1);
  t.same(stops, ['failed']);
  t.same((await a.send(s, 'good', 0)).data, 1, 'state started over');
  t.equal(a.subscriberCount, 1, 'subscribers stay');
});

t.test('timers arrive through the mailbox, repeat, cancel, and are cleared on stop', async (t) => {
  const fired: string[] = [];
  const def = defineActor<{ ticks: number }>({
    match: 'timers',
    init: () => ({ ticks: 0 }),
    onJoin(ctx) {
      ctx.timers.after('once', 100, 'payload');
      ctx.timers.every('tick', 30);
    },
    onTimer(ctx, name, data) {
      fired.push(`${name}@${ctx.now()}${data ? ':' + String(data) : ''}`);
      if (name === 'tick' && ++ctx.state.ticks === 3) ctx.timers.cancel('tick');
    },
    onStop: (ctx, reason) => void fired.push(`stop:${reason}:${String(ctx.timers.has('later'))}`),
  });
  const a = testActor(def);
  await a.join();
  await a.advance(200);
  t.same(fired, ['tick@30', 'tick@60', 'tick@90', 'once@100:payload']);
  const s2 = await a.join();
  t.ok(s2);
  await a.stop('shutdown');
  await a.advance(1000);
  t.same(fired.slice(4), ['stop:shutdown:false'], 'no timer fires after stop');
  t.equal(a.clock.pending, 0, 'nothing left on the clock');
});

t.test('bad timer arguments are refused with bad_timer', async (t) => {
  const def = defineActor({ match: 't', onMessage: (ctx, msg) => void ctx.timers.every('x', msg.data as number) });
  const a = testActor(def);
  const s = await a.join();
  t.equal(await code(a.send(s, 'm', 0)), 'bad_timer');
  t.equal(await code(a.send(s, 'm', Number.NaN)), 'bad_timer');
  t.equal(a.stats.failures, 0, 'a refusal, not a failure');
});

t.test('kick removes one subscriber with a reason; onLeave runs; pushes reach only the target', async (t) => {
  const left: string[] = [];
  const def = defineActor({
    match: 'mod',
    onMessage(ctx, msg, from) {
      if (msg.event === 'kick') return { reply: ctx.kick(msg.data as string, 'spam') };
      if (msg.event === 'whisper') return { reply: ctx.push(msg.data as string, 'psst', { from: from.socketId }) };
      if (msg.event === 'user') return { reply: ctx.pushUser(msg.data as string, 'hi', 1) };
      return undefined;
    },
    onLeave: (_ctx, who) => void left.push(who.socketId),
  });
  const a = testActor(def);
  const mod = await a.join({ userId: 'mod' });
  const u1 = await a.join({ userId: 'u' });
  const u2 = await a.join({ userId: 'u' });
  t.same((await a.send(mod, 'user', 'u')).data, 2, 'both connections of the user');
  t.same(u1.events('hi'), [{ event: 'hi', data: 1, private: true }]);
  t.same(u2.events('hi'), [{ event: 'hi', data: 1, private: true }]);
  t.same(mod.events('hi'), []);
  t.same((await a.send(mod, 'whisper', u1.socketId)).data, true);
  t.same(u1.events('psst'), [{ event: 'psst', data: { from: mod.socketId }, private: true }]);
  t.same(u2.events('psst'), []);
  t.same((await a.send(mod, 'kick', u1.socketId)).data, true);
  await a.settle();
  t.equal(u1.kicked, 'spam');
  t.same(left, [u1.socketId]);
  t.equal(a.subscriberCount, 2);
  t.equal(await code(a.send(u1, 'x', 1)), 'not_subscribed');
  t.same((await a.send(mod, 'kick', u1.socketId)).data, false, 'kicking twice is a no-op');
  t.same((await a.send(mod, 'whisper', u1.socketId)).data, false, 'no push to a former subscriber');
});

t.test('the test kit reports compute tasks as the server does: a throw is task_failed naming the task, a missing one not_found', async (t) => {
  const results: unknown[] = [];
  const a = testActor(
    defineActor({
      match: 'calc-*',
      onMessage(ctx, msg) {
        ctx.compute(msg.event, msg.data);
        return { reply: 'started' };
      },
      onComputed(_ctx, r) {
        results.push(r);
      },
    }),
    { channel: 'calc-1', tasks: { sq: (n) => { if ((n as number) < 0) throw new Error('negative!'); return (n as number) ** 2; } } },
  );
  const s = await a.join();
  for (const [task, n] of [['sq', 3], ['sq', -1], ['cube', 2]] as const) await a.send(s, task, n);
  await a.settle();
  t.same(results, [
    { task: 'sq', ok: true, value: 9 },
    { task: 'sq', ok: false, error: { code: 'task_failed', message: 'compute task sq failed: negative!' } },
    { task: 'cube', ok: false, error: { code: 'not_found', message: 'no compute task cube (pass it in options.tasks)' } },
  ]);
});

t.test('the test kit sees publications made while nobody is subscribed', async (t) => {
  const def = defineActor({ match: 'lonely' });
  const a = testActor(def);
  await a.publish('from-api', 1);
  const s = await a.join();
  await a.publish('seen', 2);
  await a.leave(s);
  await a.publish('after', 3);
  t.same(a.publications.map((p) => [p.event, p.offset]), [['from-api', 1], ['seen', 2], ['after', 3]], 'every publication, in order, with or without subscribers');
  t.same(s.received.map((r) => r.event), ['seen'], 'the subscriber got only what was published while it was subscribed');
});

t.test('inside onJoin, pushUser reaches the joiner as push does', async (t) => {
  const counts: number[] = [];
  const def = defineActor({
    match: 'welcome',
    onJoin(ctx, who) {
      counts.push(ctx.pushUser(who.userId!, 'welcome', { to: who.userId }));
    },
  });
  const a = testActor(def);
  const first = await a.join({ userId: 'ann' });
  const second = await a.join({ userId: 'ann' });
  t.same(counts, [1, 2], "the joiner counts, and so do the user's connections already in");
  t.same(first.received.map((r) => r.event), ['welcome', 'welcome'], 'the first connection got its own welcome and the second one');
  t.same(second.received.map((r) => [r.event, r.private]), [['welcome', true]], 'the joiner got its welcome');
});
