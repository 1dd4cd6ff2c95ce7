/**
 * Slow consumers, two ways. The sweep closes a socket whose send buffer passed --max-backpressure while
 * its close frame still fits. uWS's `dropped` callback: it skipped a message for a socket whose buffer is full, so the client now has
 * a gap it cannot see. The socket is marked closed at once (nothing more is sent to it), counted, and
 * ended with the transport's reconnect code. The end is deferred: ending a socket from inside uWS's
 * publish loop, where `dropped` runs, crashes uWS.
 */
import type { WebSocket } from 'uWebSockets.js';
import type { Hub } from '../runtime/hub.js';
import type { ThreadContext } from '../runtime/context.js';
import { countRefusal } from '../runtime/instruments.js';
import { metrics } from '../runtime/metrics.js';

/**
 * How often sockets are checked for a send buffer over --max-backpressure while the shard works. The
 * sweep runs on the thread's tick (thread-sampler.ts), so a shard at rest checks at the tick's rest
 * interval (200 ms) until its first busy second: the headroom of uwsBackpressureLimit covers that.
 */
const SWEEP_MS = 100;

/**
 * While nothing was delivered and no client sent anything, buffers can only shrink: a pass over every
 * connection then runs this rarely (it is a C++ call per socket: 10,000 idle connections cost a shard
 * ~8 ms of CPU a second at SWEEP_MS). Sends that are neither (a presence event, a refresh) are small,
 * and still swept within this.
 */
const IDLE_SWEEP_MS = 1000;

/** Room above --max-backpressure, at least, before uWS's own limit drops messages (and close frames). */
const MIN_HEADROOM = 4 * 1024 * 1024;

/**
 * uWS's own limit for a socket whose real limit, enforced by the sweep, is `maxBackpressure`: 8× that,
 * and never less than 4 MB above it, so that a small --max-backpressure with large messages does not let
 * a buffer pass uWS's limit between two sweeps (the client would then see an abrupt close instead of
 * the close code that says why; seen in test/slow-consumer.test.ts at 64 KB with 8 KB messages).
 */
export function uwsBackpressureLimit(maxBackpressure: number): number {
  return Math.max(maxBackpressure * 8, maxBackpressure + MIN_HEADROOM);
}
const swept = new WeakSet<Hub>();

/** One sweep per shard over every connection that can be swept (native and Pusher WebSockets). */
export function sweepSlowConsumers(ctx: ThreadContext): void {
  const { hub, sampler } = ctx;
  const { maxBackpressure } = ctx.config;
  if (swept.has(hub)) return;
  swept.add(hub);
  const m = metrics();
  // Everything this host delivered and received: unchanged means no buffer can have grown since.
  const activity = (): number => m.value('rt_deliveries_total') + m.list('rt_messages_in_total').reduce((n, s) => n + s.value, 0);
  let seen = -1;
  let lastPass = 0;
  // On the thread's tick: every SWEEP_MS while the shard works; at rest, at the tick's rest interval.
  sampler.every(SWEEP_MS, () => {
    const now = performance.now();
    const a = activity();
    if (a === seen && now - lastPass < IDLE_SWEEP_MS) return;
    seen = a;
    lastPass = now;
    for (const c of hub.clients.values()) {
      if (c.endSlowConsumer && !c.closed && c.ws && c.ws.getBufferedAmount() > maxBackpressure) {
        countRefusal('slow_consumer');
        c.endSlowConsumer();
      }
    }
  });
}

export function endDroppedSocket<D extends { client?: { closed: boolean }; gone?: boolean }>(ws: WebSocket<D>, code: number, reason: string): void {
  const data = ws.getUserData();
  const client = data.client;
  if (!client || client.closed) return;
  client.closed = true;
  countRefusal('slow_consumer');
  metrics().inc('rt_slow_consumer_drops_total');
  setImmediate(() => {
    if (!data.gone) ws.end(code, reason);
  });
}
