// The cursor example (actors/cursors.ts): a repeating timer coalesces high-rate moves into at most
// one broadcast per 50 ms, and stops when nothing moves. Through rt-actors/testing's manual clock.
import t from 'tap';
import { testActor } from 'rt-actors/testing';
import cursors, { FLUSH_MS } from '../actors/cursors.js';

t.test('moves are coalesced into one broadcast per tick with the latest position of each cursor', async (t) => {
  const a = testActor(cursors, { channel: 'cursors-doc' });
  const ann = await a.join({ userId: 'ann' });
  const bob = await a.join({ userId: 'bob' });
  for (let i = 0; i < 100; i++) {
    const r = await a.send(ann, 'move', { x: i, y: i });
    t.equal(r.offset, undefined);
  }
  await a.send(bob, 'move', { x: 5, y: 6 });
  t.equal(a.publications.length, 0, 'nothing broadcast before the tick');
  await a.advance(FLUSH_MS);
  t.same(bob.events('cursors').map((r) => r.data), [{ ann: { x: 99, y: 99 }, bob: { x: 5, y: 6 } }]);
  // one second of moves every 5 ms: at most 20 broadcasts
  for (let ms = 0; ms < 1000; ms += 5) {
    await a.send(ann, 'move', { x: ms, y: 0 });
    await a.advance(5);
  }
  const ticks = ann.events('cursors').length - 1;
  t.ok(ticks <= 20 && ticks >= 19, `${ticks} broadcasts in one second`);
  await a.advance(FLUSH_MS * 3);
  t.equal(a.clock.pending, 0, 'the timer stopped once nothing moved');
  t.equal((await a.send(ann, 'move', { x: 'a', y: 1 }).catch((e: { code: string }) => e.code)), 'bad_move');
});
