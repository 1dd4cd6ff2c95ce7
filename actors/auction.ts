/**
 * Example channel actor: auctions on public channels `auction-<id>` (docs/actors.md, "The auction").
 * - subscribe: the reply's data is the auction's current state;
 * - a client publishes `bid` { amount, closeAfterMs? } (Laravel Echo's whisper sends `client-bid`):
 *   refused with `bad_bid`, `auction_closed` or `bid_too_low`, else answered { accepted: true, amount },
 *   broadcast as `bid` { amount, bidder }, and the previous highest bidder is told `outbid` privately;
 * - the first accepted bid starts the clock (closeAfterMs, 1000–600000, default 10000): when it runs
 *   out every subscriber gets `closed` { winner, amount }, once.
 * Copy it into your own --actors folder and change it.
 */
import { ActorError, defineActor } from 'rt-actors';

export interface AuctionState {
  highest: number;
  /** userId of the highest bidder, else its socket id; null before the first bid. */
  bidder: string | null;
  /** Socket id of the highest bid, to tell an anonymous bidder it was outbid. */
  bidderSocket: string | null;
  /** When the auction closes (ms since the epoch); null until the first bid. */
  closesAt: number | null;
  closed: boolean;
}

/** What clients send. */
export interface AuctionIn {
  bid: { amount: number; closeAfterMs?: number };
  'client-bid': { amount: number; closeAfterMs?: number };
}

/** What the auction sends. */
export interface AuctionOut {
  bid: { amount: number; bidder: string };
  outbid: { amount: number };
  closed: { winner: string | null; amount: number };
}

export const CLOSE_AFTER = { min: 1000, max: 600_000, default: 10_000 } as const;

function snapshot(s: AuctionState) {
  return { highest: s.highest, bidder: s.bidder, closesAt: s.closesAt, closed: s.closed };
}

export default defineActor<AuctionState, AuctionIn, AuctionOut>({
  match: 'auction-*',
  init: () => ({ highest: 0, bidder: null, bidderSocket: null, closesAt: null, closed: false }),

  onJoin(ctx) {
    return { reply: snapshot(ctx.state) };
  },

  onMessage(ctx, msg, from) {
    if (msg.event !== 'bid' && msg.event !== 'client-bid') throw new ActorError('unknown_event', 'auctions accept "bid" events only');
    const bid = (msg.data ?? {}) as { amount?: unknown; closeAfterMs?: unknown };
    const amount = bid.amount;
    if (typeof amount !== 'number' || !Number.isFinite(amount) || amount <= 0) {
      throw new ActorError('bad_bid', 'amount must be a positive number');
    }
    const s = ctx.state;
    if (s.closed) throw new ActorError('auction_closed', `auction ${ctx.channel} is closed`);
    if (amount <= s.highest) throw new ActorError('bid_too_low', `a bid must be higher than ${s.highest}`);
    let closeAfter: number = CLOSE_AFTER.default;
    if (s.closesAt === null && bid.closeAfterMs !== undefined) {
      const c = bid.closeAfterMs;
      if (typeof c !== 'number' || !Number.isInteger(c) || c < CLOSE_AFTER.min || c > CLOSE_AFTER.max) {
        throw new ActorError('bad_bid', `closeAfterMs must be an integer from ${CLOSE_AFTER.min} to ${CLOSE_AFTER.max}`);
      }
      closeAfter = c;
    }

    const bidder = from.userId ?? from.socketId;
    const previous = { bidder: s.bidder, socket: s.bidderSocket };
    s.highest = amount;
    s.bidder = bidder;
    s.bidderSocket = from.socketId;
    if (s.closesAt === null) {
      s.closesAt = ctx.now() + closeAfter;
      ctx.timers.after('close', closeAfter);
    }
    ctx.broadcast('bid', { amount, bidder });
    if (previous.bidder !== null && previous.bidder !== bidder) {
      // A user is told on every connection it has in the auction; an anonymous bidder on the one it bid from.
      if (previous.bidder !== previous.socket) ctx.pushUser(previous.bidder, 'outbid', { amount });
      else ctx.push(previous.socket!, 'outbid', { amount });
    }
    return { reply: { accepted: true, amount } };
  },

  onTimer(ctx, name) {
    if (name !== 'close' || ctx.state.closed) return;
    ctx.state.closed = true;
    ctx.broadcast('closed', { winner: ctx.state.bidder, amount: ctx.state.highest });
  },
});
