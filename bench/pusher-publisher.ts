/**
 * The backend of bench/pusher.ts, in a process of its own as a Laravel or Node backend is: triggers
 * events through a server's Pusher HTTP API with the official `pusher` SDK, at a fixed rate or as fast
 * as 32 concurrent requests allow, then exits. Kept apart from the 1,000 subscribers so that their
 * receiving does not slow the publisher down (which, in one event loop, it did: the burst pace was
 * bounded by the clients, not by the servers).
 *
 *   node dist/bench/pusher-publisher.js '{"port":…,"app":{…},"pace":{…},"size":64}'
 */
import PusherServer from 'pusher';
import { now } from './lib.js';

export type Pace = { kind: 'rate'; rate: number; seconds: number } | { kind: 'burst'; count: number };

export interface PublisherSpec {
  port: number;
  app: { id: string; key: string; secret: string };
  pace: Pace;
  size: number;
}

/** A `size`-byte JSON payload carrying its sequence number and send time (epoch ms, comparable across processes). */
export function payload(size: number, seq: number): string {
  const head = JSON.stringify({ seq, t: now(), p: '' });
  return head.slice(0, -2) + 'x'.repeat(Math.max(0, size - head.length)) + '"}';
}

export async function publish(spec: PublisherSpec): Promise<void> {
  const { app, pace, size } = spec;
  const backend = new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(spec.port), useTLS: false } as never);
  if (pace.kind === 'rate') {
    const count = Math.round(pace.rate * pace.seconds);
    const t0 = now();
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const wait = t0 + (i * 1000) / pace.rate - now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      sends.push(backend.trigger('bench', 'm', payload(size, i)));
    }
    await Promise.all(sends);
    return;
  }
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < pace.count) await backend.trigger('bench', 'm', payload(size, next++));
  };
  await Promise.all(Array.from({ length: 32 }, lane));
}

if (process.argv[2] && import.meta.url === `file://${process.argv[1]}`) {
  await publish(JSON.parse(process.argv[2]) as PublisherSpec);
  process.exit(0);
}
