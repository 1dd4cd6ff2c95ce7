// The replaced shard's side of the owner-crash reconcile, on its own: it waits for every thread's
// report, merges what they saw, ignores malformed or foreign reports, and hands the union over once.
// The end-to-end behaviour is in test/presence-crash.test.ts and test/pusher-presence-crash.test.ts.
import t from 'tap';
import { ReplayCollector } from '../src/actors/replay-collector.js';
import { ReplayGhosts } from '../src/actors/replay-ghosts.js';
import type { Member } from '../src/protocol/native.js';

function collector(threads: number, timeoutMs = 60_000) {
  const done: ReadonlyMap<string, Member[]>[] = [];
  const warnings: string[] = [];
  const begun = { n: 0 };
  const c = new ReplayCollector({ threads, timeoutMs, owns: (ch) => ch.startsWith('presence-mine'), begun: () => void begun.n++, done: (seen) => done.push(seen), warn: (m) => warnings.push(m) });
  return { c, done, warnings, begun };
}

t.test('waits for every thread, merges their members once, keeps only owned channels', async (t) => {
  const { c, done, warnings, begun } = collector(3);
  c.begin();
  c.report(0, { t: 'replayed', seen: [{ ch: 'presence-mine', m: [{ user_id: 'a', user_info: 1 }] }, { ch: 'presence-other', m: [{ user_id: 'x' }] }] });
  c.report(2, { t: 'replayed', seen: [{ ch: 'presence-mine', m: [{ user_id: 'a' }, { user_id: 'b' }] }] });
  t.same(done, [], 'not before every thread reported');
  c.report(2, { t: 'replayed', seen: [] });
  t.same(done, [], 'a thread counts once');
  c.report(1, { t: 'replayed', seen: [] });
  t.equal(done.length, 1);
  t.same([...done[0]!], [['presence-mine', [{ user_id: 'a', user_info: 1 }, { user_id: 'b' }]]], 'the union, first report of a user kept, foreign channels left out');
  c.report(0, { t: 'replayed', seen: [{ ch: 'presence-mine', m: [{ user_id: 'c' }] }] });
  t.equal(done.length, 1, 'a late report is ignored: nothing is announced twice');
  t.same(warnings, []);
  t.equal(begun.n, 1, 'the actors were told once that a reconcile is due');
});

t.test('malformed reports are logged and ignored, never thrown', async (t) => {
  const { c, done, warnings } = collector(1);
  for (const bad of [null, 42, { t: 'replayed' }, { seen: 'x' }, { seen: [null] }, { seen: [{ ch: 1, m: [] }] }, { seen: [{ ch: 'presence-mine', m: {} }] }, { seen: [{ ch: 'presence-mine', m: [{ user_id: 7 }] }] }]) {
    t.doesNotThrow(() => c.report(0, bad));
  }
  t.equal(warnings.length, 8, 'each one is logged');
  t.same(done, [], 'and does not count as the thread having reported');
  c.report(0, { seen: [] });
  t.equal(done.length, 1);
});

t.test('a thread that never reports: the timeout reconciles with what came', async (t) => {
  const { c, done, warnings } = collector(2, 20);
  c.report(0, { seen: [{ ch: 'presence-mine', m: [{ user_id: 'a' }] }] });
  await new Promise<void>((resolve) => {
    const check = () => (done.length ? resolve() : setTimeout(check, 5));
    check();
  });
  t.same([...done[0]!], [['presence-mine', [{ user_id: 'a' }]]]);
  t.match(warnings, [/1 of 2 threads/]);
});

t.test('ghosts: members not registered again and not already announced, once', async (t) => {
  const g = new ReplayGhosts();
  t.equal(g.waiting, false);
  g.memberLeft('early');
  g.due();
  t.equal(g.waiting, true);
  g.memberLeft('announced');
  const seen: Member[] = [{ user_id: 'early' }, { user_id: 'announced' }, { user_id: 'kept' }, { user_id: 'gone', user_info: 1 }, { user_id: 'gone' }];
  t.same(g.settle(seen, (u) => u === 'kept'), [{ user_id: 'early' }, { user_id: 'gone', user_info: 1 }], 'a leave before the replay does not count; one during the wait does');
  t.equal(g.waiting, false, 'settling ends the wait');
});
