/**
 * uWS's `dropped` callback: it skipped a message for a socket whose buffer is full, so the client now has
 * a gap it cannot see. The socket is marked closed at once (nothing more is sent to it), counted, and
 * ended with the transport's reconnect code. The end is deferred: ending a socket from inside uWS's
 * publish loop, where `dropped` runs, crashes uWS.
 */
import type { WebSocket } from 'uWebSockets.js';
import { countRefusal } from '../runtime/instruments.js';

export function endDroppedSocket<D extends { client?: { closed: boolean }; gone?: boolean }>(ws: WebSocket<D>, code: number, reason: string): void {
  const data = ws.getUserData();
  const client = data.client;
  if (!client || client.closed) return;
  client.closed = true;
  countRefusal('slow_consumer');
  setImmediate(() => {
    if (!data.gone) ws.end(code, reason);
  });
}
