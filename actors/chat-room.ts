/**
 * Example channel actor: chat rooms `chat-<room>`.
 * - anyone may join, but a banned word in the join data is refused;
 * - clients may publish `message` events; the actor stamps them with the sender and a sequence number,
 *   refuses empty text, and keeps a count of messages in its state;
 * - joins and leaves are announced to the room as `system` events, with the number online — counted
 *   from the subscribers, not kept in state: state starts again from init when the owner shard crashes,
 *   while the other shards' subscribers stay, re-registered without a new onJoin.
 * Copy it into your own --actors folder and change it.
 */
import { defineActor, ActorError } from 'rt-actors';

interface RoomState {
  messages: number;
}

export default defineActor<RoomState>({
  match: 'chat-*',
  history: { size: 50, ttlSeconds: 3600 },
  init: () => ({ messages: 0 }),

  authorize(_ctx, _who, data) {
    if (data && typeof data === 'object' && (data as { nickname?: string }).nickname === 'root') {
      throw new ActorError('nickname_taken', 'nickname "root" is reserved');
    }
    return true;
  },

  onJoin(ctx, who) {
    // onJoin runs before the joiner is registered; onLeave after the leaver is gone.
    ctx.broadcast('system', { text: `${who.userId ?? who.socketId} joined`, online: ctx.subscriberCount() + 1 });
  },

  onLeave(ctx, who) {
    ctx.broadcast('system', { text: `${who.userId ?? who.socketId} left`, online: ctx.subscriberCount() });
  },

  onMessage(ctx, msg, from) {
    if (msg.event !== 'message') throw new ActorError('unknown_event', 'chat rooms accept "message" events only');
    const text = (msg.data as { text?: unknown } | null)?.text;
    if (typeof text !== 'string' || text.trim() === '') return null;
    ctx.state.messages++;
    return { event: 'message', data: { text, from: from.userId ?? from.socketId, n: ctx.state.messages } };
  },
});
