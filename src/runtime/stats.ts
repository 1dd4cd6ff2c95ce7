/**
 * Per-thread gauges in shared memory, so /health and /metrics on any shard answer for the whole host
 * without asking the other threads. One writer per slot (its thread); readers tolerate a torn read.
 */
export const STAT_FIELDS = [
  'connections', 'channels', 'delivered', 'published', 'ringQueuedBytes', 'alive', 'restarts', 'subscriptions', 'heapUsed',
  // Redis bridge (shards only)
  'redisUp', 'redisInvalid', 'redisRecovered', 'redisResyncs', 'redisErrors', 'redisTracked',
  // Backpressure between threads (src/runtime/mesh.ts)
  'overloadRefused', 'overloadedPeers',
  // When the server started (epoch ms; the main thread's row): a replaced shard must not restart /health's uptime.
  'startedAt',
  // A shard's last housekeeping tick (epoch ms, written by the shard), and whether the supervisor
  // found it stuck (written by the main thread into the shard's row: the one other writer).
  'tickAt', 'stuck',
] as const;
export type StatField = (typeof STAT_FIELDS)[number];

export class SharedStats {
  private readonly f: Float64Array;
  constructor(readonly sab: SharedArrayBuffer, readonly threads: number) {
    this.f = new Float64Array(sab);
  }
  static alloc(threads: number): SharedArrayBuffer {
    return new SharedArrayBuffer(threads * STAT_FIELDS.length * 8);
  }
  set(thread: number, field: StatField, v: number): void {
    this.f[thread * STAT_FIELDS.length + STAT_FIELDS.indexOf(field)] = v;
  }
  get(thread: number, field: StatField): number {
    return this.f[thread * STAT_FIELDS.length + STAT_FIELDS.indexOf(field)]!;
  }
  total(field: StatField): number {
    let n = 0;
    for (let t = 0; t < this.threads; t++) n += this.get(t, field);
    return n;
  }
}
