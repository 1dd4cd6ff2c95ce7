/**
 * Example channel actor: shared cursors on `cursors-<doc>`, coalesced by a repeating timer.
 * Clients publish `move` { x, y } as often as they like (answered, never published one by one); every
 * 50 ms the actor broadcasts one `cursors` event with the latest position of each cursor that moved,
 * so a channel sends at most 20 updates a second however fast its clients move. The timer stops when
 * nothing moves, so an idle channel's actor can be removed.
 */
import { ActorError, defineActor } from 'rt-actors';

export const FLUSH_MS = 50;

interface Point { x: number; y: number }

export interface CursorState {
  /** Latest position of each cursor (userId, else socket id) since the last flush. */
  pending: Record<string, Point>;
}

export interface CursorIn {
  move: Point;
}

export interface CursorOut {
  cursors: Record<string, Point>;
  left: { id: string };
}

export default defineActor<CursorState, CursorIn, CursorOut>({
  match: 'cursors-*',
  history: { size: 0 },
  init: () => ({ pending: {} }),

  onMessage(ctx, msg, from) {
    const p = msg.data as Partial<Point> | null;
    if (msg.event !== 'move' || !p || typeof p.x !== 'number' || typeof p.y !== 'number' || !Number.isFinite(p.x) || !Number.isFinite(p.y)) {
      throw new ActorError('bad_move', 'send "move" with { x, y } numbers');
    }
    ctx.state.pending[from.userId ?? from.socketId] = { x: p.x, y: p.y };
    if (!ctx.timers.has('flush')) ctx.timers.every('flush', FLUSH_MS);
    return { reply: true };
  },

  onTimer(ctx) {
    const moved = ctx.state.pending;
    if (Object.keys(moved).length === 0) {
      ctx.timers.cancel('flush');
      return;
    }
    ctx.state.pending = {};
    ctx.broadcast('cursors', moved);
  },

  onLeave(ctx, who) {
    const id = who.userId ?? who.socketId;
    delete ctx.state.pending[id];
    ctx.broadcast('left', { id });
  },
});
