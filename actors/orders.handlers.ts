/**
 * Example request handlers: placing orders over the socket instead of an HTTP round trip.
 *   Socket.IO:  const { id } = await socket.emitWithAck('order.place', { item: 'book', qty: 1 });
 *   native:     { "op": "rpc", "ref": 1, "event": "order.place", "data": { "item": "book", "qty": 1 } }
 * The handler checks the caller's identity, answers through the ack, tells the user's other tabs on
 * their private channel, and emits a receipt back to this connection.
 * Copy it into your own --actors folder and change it.
 */
import { randomUUID } from 'node:crypto';
import { defineHandlers, HandlerError } from 'rt-actors';

interface Order {
  item: string;
  qty: number;
}

function parseOrder(o: unknown): Order {
  const x = o as Partial<Order> | null;
  if (!x || typeof x.item !== 'string' || x.item.length === 0 || !Number.isInteger(x.qty) || (x.qty as number) < 1) {
    throw new HandlerError('bad_order', 'an order is { item: string, qty: positive integer }');
  }
  return { item: x.item, qty: x.qty as number };
}

export default defineHandlers({
  namespace: '/',

  onConnect(conn) {
    conn.data.placed = 0;
  },

  events: {
    async 'order.place'(conn, raw: unknown) {
      if (conn.userId === undefined) throw new HandlerError('login_required', 'connect with a token to place orders');
      const order = parseOrder(raw);
      // A real handler would call the backend here (fetch, database) before confirming.
      const id = randomUUID();
      conn.data.placed = ((conn.data.placed as number | undefined) ?? 0) + 1;
      await conn.publish(`private-orders.${conn.userId}`, 'order.placed', { id, ...order }, { excludeSelf: true });
      conn.emit('order.receipt', { id, placedThisSession: conn.data.placed });
      return { id };
    },

    'order.count'(conn) {
      return { placed: (conn.data.placed as number | undefined) ?? 0 };
    },
  },
});
