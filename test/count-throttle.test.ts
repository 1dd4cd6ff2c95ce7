// The subscription_count throttle on the project's manual clock: the first change after a quiet window
// at once (but never inline), later ones coalesced into one announcement of the latest value per window.
import t from 'tap';
import { CountThrottle, SUBSCRIPTION_COUNT_WINDOW_MS } from '../src/actors/count-throttle.js';
import { ManualClock } from '../src/testing/clock.js';

function setup() {
  const clock = new ManualClock(10_000);
  const said: [number, number][] = [];
  const throttle = new CountThrottle(clock, (n) => said.push([clock.now(), n]));
  /** Fires every timer due up to `to`, in order, and moves there. */
  const advance = (to: number): void => {
    for (let d = clock.nextDue(to); d; d = clock.nextDue(to)) clock.fire(d);
    clock.set(to);
  };
  return { clock, said, throttle, advance };
}

t.test('first change at once, then one announcement per window with the latest value', async (t) => {
  t.equal(SUBSCRIPTION_COUNT_WINDOW_MS, 1000, 'the documented window');
  const { said, throttle, advance } = setup();
  throttle.changed(1);
  t.same(said, [], 'never inline: the subscribe reply leaves first');
  advance(10_000);
  t.same(said, [[10_000, 1]], 'then at once');
  advance(10_100);
  throttle.changed(2);
  advance(10_200);
  throttle.changed(3);
  throttle.changed(2);
  advance(10_999);
  t.same(said.length, 1, 'nothing more within the window');
  advance(11_000);
  t.same(said.at(-1), [11_000, 2], "one announcement at the window's end, of the latest value");
  advance(11_500);
  throttle.changed(3);
  advance(12_000);
  t.same(said.at(-1), [12_000, 3], 'the next window counts from the last announcement');
  advance(20_000);
  throttle.changed(4);
  advance(20_000);
  t.same(said.at(-1), [20_000, 4], 'after a quiet window: at once again');
  t.equal(said.length, 4, 'four announcements for seven changes');
});

t.test('stop drops what is pending', async (t) => {
  const { clock, said, throttle, advance } = setup();
  throttle.changed(1);
  throttle.stop();
  advance(30_000);
  t.same(said, [], 'nothing announced after stop');
  t.equal(clock.pending, 0, 'no timer left');
});
