// Helpers for the fault tests: which shard owns a channel (the documented FNV-1a rule), a client on a
// chosen shard, and the probe actor's out-of-thread signals (test/fixtures/fault-actors/probe.ts).
import { BroadcastChannel } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { TestClient } from './ws-client.js';

export const FAULT_ACTORS = fileURLToPath(new URL('../fixtures/fault-actors', import.meta.url));

/** owner(channel) = fnv1a(channel) mod shards (docs/architecture.md). */
export function ownerOf(channel: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < channel.length; i++) {
    h ^= channel.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

/** A channel named `<prefix><n>` that `shard` owns. */
export function channelOwnedBy(prefix: string, shard: number, shards: number): string {
  for (let n = 0; ; n++) if (ownerOf(prefix + n, shards) === shard) return prefix + n;
}

/** Connects until a connection lands on `shard` (the acceptor hands sockets round-robin); closes the others. */
export async function clientOnShard(url: string, shard: number, t: { teardown(fn: () => unknown): void }): Promise<TestClient> {
  for (let i = 0; i < 50; i++) {
    const c = await TestClient.connect(url);
    if (c.welcome.socket_id.startsWith(`${shard}.`)) {
      t.teardown(() => c.close());
      return c;
    }
    c.close();
  }
  throw new Error(`no connection landed on shard ${shard}`);
}

export type ProbeSignal = { fired?: string; stalled?: number; held?: string; exiting?: string; threadId: number };

/** Everything the probe actor signals from any thread, in arrival order. */
export function listenProbe(t: { teardown(fn: () => unknown): void }): { signals: ProbeSignal[]; next(pred: (s: ProbeSignal) => boolean, timeoutMs?: number): Promise<ProbeSignal> } {
  const bc = new BroadcastChannel('rt-actors-test-probe');
  const signals: ProbeSignal[] = [];
  let waiters: { pred: (s: ProbeSignal) => boolean; resolve: (s: ProbeSignal) => void }[] = [];
  bc.onmessage = (e) => {
    const s = (e as MessageEvent).data as ProbeSignal;
    signals.push(s);
    waiters = waiters.filter((w) => (w.pred(s) ? (w.resolve(s), false) : true));
  };
  t.teardown(() => bc.close());
  return {
    signals,
    next(pred, timeoutMs = 20_000) {
      const seen = signals.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no probe signal; got ${JSON.stringify(signals)}`)), timeoutMs);
        waiters.push({ pred, resolve: (s) => (clearTimeout(timer), resolve(s)) });
      });
    },
  };
}

/**
 * Polls until `fn` returns a truthy value or the deadline passes. A throw counts as "not yet": while a
 * shard restarts, a kept-alive HTTP connection to the dead one fails.
 */
export async function until<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve().then(fn).catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
