// The auction example (actors/auction.ts) through rt-actors/testing: the real actor runtime in memory,
// simulated subscribers, and a clock that moves only when the test says so.
import t from 'tap';
import { testActor } from 'rt-actors/testing';
import auction from '../actors/auction.js';

const code = (p: Promise<unknown>) => p.then(() => 'accepted', (err: { code?: string }) => err.code);

t.test('join replies with the state; bids are validated with the documented codes', async (t) => {
  const a = testActor(auction, { channel: 'auction-7', now: 1_000_000 });
  const alice = await a.join({ userId: 'alice' });
  t.same(alice.reply, { highest: 0, bidder: null, closesAt: null, closed: false });
  t.equal(await code(a.send(alice, 'bid', { amount: -1 })), 'bad_bid');
  t.equal(await code(a.send(alice, 'bid', { amount: 'ten' })), 'bad_bid');
  t.equal(await code(a.send(alice, 'bid', { amount: Infinity })), 'bad_bid');
  t.equal(await code(a.send(alice, 'bid', null)), 'bad_bid');
  t.equal(await code(a.send(alice, 'bid', { amount: 5, closeAfterMs: 999 })), 'bad_bid', 'closeAfterMs below 1000');
  t.equal(await code(a.send(alice, 'bid', { amount: 5, closeAfterMs: 600_001 })), 'bad_bid', 'closeAfterMs above 600000');
  t.equal(await code(a.send(alice, 'dance', {})), 'unknown_event');
  t.equal(a.publications.length, 0, 'nothing refused was published');

  const ok = await a.send(alice, 'bid', { amount: 10 });
  t.same(ok.data, { accepted: true, amount: 10 });
  t.equal(ok.offset, undefined, 'the reply is not a publication');
  t.same(alice.events('bid'), [{ event: 'bid', data: { amount: 10, bidder: 'alice' }, offset: 1 }]);
  t.equal(await code(a.send(alice, 'bid', { amount: 10 })), 'bid_too_low');
  t.equal(await code(a.send(alice, 'bid', { amount: 3 })), 'bid_too_low');

  const late = await a.join({ userId: 'carol' });
  t.same(late.reply, { highest: 10, bidder: 'alice', closesAt: 1_000_000 + 10_000, closed: false }, 'default closeAfterMs is 10000');
  t.equal(late.offset, 1, 'a joiner continues from the offset in its reply');
});

t.test('the previous highest bidder is told privately; closing happens once, on the clock', async (t) => {
  const a = testActor(auction, { channel: 'auction-8' });
  const alice = await a.join({ userId: 'alice' });
  const bob = await a.join({ userId: 'bob' });
  const anon = await a.join();
  const watcher = await a.join();

  await a.send(alice, 'bid', { amount: 10, closeAfterMs: 2000 });
  await a.send(alice, 'bid', { amount: 11 });
  t.same(alice.events('outbid'), [], 'no outbid when the same user raises its own bid');
  await a.send(bob, 'bid', { amount: 12 });
  t.same(alice.events('outbid'), [{ event: 'outbid', data: { amount: 12 }, private: true }]);
  t.same(watcher.events('outbid'), [], 'private: nobody else sees it');
  await a.send(anon, 'bid', { amount: 13 });
  t.same(bob.events('outbid'), [{ event: 'outbid', data: { amount: 13 }, private: true }]);
  await a.send(bob, 'bid', { amount: 14 });
  t.same(anon.events('outbid'), [{ event: 'outbid', data: { amount: 14 }, private: true }], 'an anonymous bidder is told on its connection');
  t.same(
    watcher.events('bid').map((r) => r.data),
    [
      { amount: 10, bidder: 'alice' },
      { amount: 11, bidder: 'alice' },
      { amount: 12, bidder: 'bob' },
      { amount: 13, bidder: anon.socketId },
      { amount: 14, bidder: 'bob' },
    ],
  );
  t.same(a.publications.map((p) => p.offset), [1, 2, 3, 4, 5], 'private pushes take no offsets');

  await a.advance(1999);
  t.same(watcher.events('closed'), [], 'not before closeAfterMs');
  await a.advance(1);
  t.same(watcher.events('closed'), [{ event: 'closed', data: { winner: 'bob', amount: 14 }, offset: 6 }]);
  t.equal(await code(a.send(alice, 'bid', { amount: 100 })), 'auction_closed');
  await a.advance(60_000);
  t.equal(watcher.events('closed').length, 1, 'closed exactly once');
  const after = await a.join();
  t.same(after.reply, { highest: 14, bidder: 'bob', closesAt: 2000, closed: true });
});
