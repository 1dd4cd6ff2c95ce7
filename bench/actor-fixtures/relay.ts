// Benchmark actor: the cheapest useful onMessage (stamp and publish), to price a hook per message.
import { defineActor } from 'rt-actors';

export default defineActor<{ n: number }>({
  match: 'relay-*',
  init: () => ({ n: 0 }),
  onMessage(ctx, msg) {
    return { event: msg.event, data: { n: ++ctx.state.n, d: msg.data } };
  },
});
