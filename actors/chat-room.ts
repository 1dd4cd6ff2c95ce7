/**
 * Example channel actor: chat rooms `chat-<room>`.
 * - anyone may join, but a banned word in the join data is refused;
 * - clients may publish `message` events; the actor stamps them with the sender and a sequence number,
 *   refuses empty text, and keeps a count of messages in its state;
 * - joins and leaves are announced to the room as `system` events.
 * Copy it into your own --actors folder and change it.
 */
import { defineActor, ActorError } from 'rt-actors';

interface RoomState {
  messages: number;
  online: number;
}

export default defineActor<RoomState>({
  match: 'chat-*',
  history: { size: 50, ttlSeconds: 3600 },
  init: () => ({ messages: 0, online: 0 }),

  authorize(_ctx, _who, data) {
    if (data && typeof data === 'object' && (data as { nickname?: string }).nickname === 'root') {
      throw new ActorError('nickname_taken', 'nickname "root" is reserved');
    }
    return true;
  },

  onJoin(ctx, who) {
    ctx.state.online++;
    ctx.broadcast('system', { text: `${who.userId ?? who.socketId} joined`, online: ctx.state.online });
  },

  onLeave(ctx, who) {
    ctx.state.online--;
    ctx.broadcast('system', { text: `${who.userId ?? who.socketId} left`, online: ctx.state.online });
  },

  onMessage(ctx, msg, from) {
    if (msg.event !== 'message') throw new ActorError('unknown_event', 'chat rooms accept "message" events only');
    const text = (msg.data as { text?: unknown } | null)?.text;
    if (typeof text !== 'string' || text.trim() === '') return null;
    ctx.state.messages++;
    return { event: 'message', data: { text, from: from.userId ?? from.socketId, n: ctx.state.messages } };
  },
});
