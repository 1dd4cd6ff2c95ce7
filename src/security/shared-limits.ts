/**
 * Limits that must hold across shards (connections per host and per IP, connection rate per IP, API
 * requests per key) kept in one SharedArrayBuffer every thread updates with Atomics — no messages, no
 * locks. IPs hash into a fixed table; two IPs sharing a slot share its limits, which errs on the strict
 * side and bounds memory whatever the number of distinct clients.
 */
const SLOTS = 1 << 16;
/**
 * Per slot: open connections, rate window (second), connections opened in that window, failed API
 * key window (second), failures in that window.
 */
const FIELDS = 5;
/** Global cells after the table: host connections, API window, API count. */
const GLOBAL = SLOTS * FIELDS;

/**
 * Wrong API keys (or dashboard tokens) one address may present per second, on all shards together.
 * A backend holding the right key is never counted, so this slows guessing without locking anyone out.
 */
export const API_KEY_FAILURES_PER_SECOND = 10;

export type AdmitResult = 'ok' | 'too_many_connections' | 'too_many_connections_from_ip' | 'connection_rate_limited';

function slotOf(ip: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < ip.length; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193);
  return ((h >>> 0) % SLOTS) * FIELDS;
}

export interface LimitSettings {
  maxConnections: number;
  maxConnectionsPerIp: number;
  connectionRatePerIp: number;
  apiRateLimit: number;
}

export class SharedLimits {
  private readonly a: Int32Array;
  /** Per-app connection counts of the Pusher gateway (set on shards when an app has maxConnections). */
  apps?: AppConnections;

  constructor(readonly sab: SharedArrayBuffer, private readonly s: LimitSettings) {
    this.a = new Int32Array(sab);
  }

  static alloc(): SharedArrayBuffer {
    return new SharedArrayBuffer((GLOBAL + 3) * 4);
  }

  /** Counts a new connection from `ip`, or says which limit refuses it (and counts nothing). */
  admit(ip: string, nowMs = Date.now()): AdmitResult {
    const a = this.a;
    const slot = slotOf(ip);
    if (!this.attempt(ip, nowMs)) return 'connection_rate_limited';
    if (this.s.maxConnections > 0 && Atomics.add(a, GLOBAL, 1) >= this.s.maxConnections) {
      Atomics.sub(a, GLOBAL, 1);
      return 'too_many_connections';
    }
    if (this.s.maxConnectionsPerIp > 0 && Atomics.add(a, slot, 1) >= this.s.maxConnectionsPerIp) {
      Atomics.sub(a, slot, 1);
      if (this.s.maxConnections > 0) Atomics.sub(a, GLOBAL, 1);
      return 'too_many_connections_from_ip';
    }
    return 'ok';
  }

  /** Counts a connection attempt from `ip` against --connection-rate-per-ip only; false past it. */
  attempt(ip: string, nowMs = Date.now()): boolean {
    return this.s.connectionRatePerIp <= 0 || this.window(slotOf(ip) + 1, this.s.connectionRatePerIp, nowMs);
  }

  /** Undoes admit() when the connection closes. */
  release(ip: string): void {
    if (this.s.maxConnections > 0) Atomics.sub(this.a, GLOBAL, 1);
    if (this.s.maxConnectionsPerIp > 0) Atomics.sub(this.a, slotOf(ip), 1);
  }

  /** One API request; false when the key is over --api-rate-limit this second. */
  apiRequest(nowMs = Date.now()): boolean {
    return this.s.apiRateLimit <= 0 || this.window(GLOBAL + 1, this.s.apiRateLimit, nowMs);
  }

  /** Counts a wrong API key presented by `ip`; false once it has presented too many this second. */
  apiKeyFailure(ip: string, nowMs = Date.now()): boolean {
    return this.window(slotOf(ip) + 3, API_KEY_FAILURES_PER_SECOND, nowMs);
  }

  /** Fixed one-second window counter at cells [at] (window) and [at+1] (count). */
  private window(at: number, limit: number, nowMs: number): boolean {
    const a = this.a;
    const second = Math.floor(nowMs / 1000) | 0;
    const seen = Atomics.load(a, at);
    if (seen !== second && Atomics.compareExchange(a, at, seen, second) === seen) Atomics.store(a, at + 1, 0);
    return Atomics.add(a, at + 1, 1) < limit;
  }
}

/**
 * Open connections per Pusher app (its `maxConnections`), counted across the host's shards in one
 * SharedArrayBuffer. Cells `[0, apps)` hold each app's host total, which admit() raises with one
 * Atomics.add, so the limit is exact however many shards admit at once. Each shard also keeps its own
 * row (`apps + shard * apps + app`), written only by that shard. A shard that crashes normally closes
 * its sockets on the way out (their close handlers release them, leaving its row at 0); should a
 * thread ever die without doing so, the supervisor subtracts what its row still holds before starting
 * the replacement (forgetShard), so nothing stays counted for connections that are gone.
 */
export class AppConnections {
  private readonly a: Int32Array;

  constructor(sab: SharedArrayBuffer, private readonly apps: number, private readonly shard: number) {
    this.a = new Int32Array(sab);
  }

  static alloc(apps: number, shards: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, apps * (shards + 1)) * 4);
  }

  /** Counts a connection to app `app` unless `max` (> 0) are open already on this host. */
  admit(app: number, max: number): boolean {
    if (max <= 0 || app < 0 || app >= this.apps) return true;
    if (Atomics.add(this.a, app, 1) >= max) {
      Atomics.sub(this.a, app, 1);
      return false;
    }
    Atomics.add(this.a, this.apps + this.shard * this.apps + app, 1);
    return true;
  }

  /** Undoes admit() when the connection closes. */
  release(app: number): void {
    Atomics.sub(this.a, app, 1);
    Atomics.sub(this.a, this.apps + this.shard * this.apps + app, 1);
  }

  /** Open connections of `app` on this host. */
  count(app: number): number {
    return app >= 0 && app < this.apps ? Atomics.load(this.a, app) : 0;
  }

  /** Supervisor, before (re)starting shard `shard`: the connections a dead shard still counted are gone. */
  static forgetShard(sab: SharedArrayBuffer, apps: number, shard: number): void {
    const a = new Int32Array(sab);
    for (let app = 0; app < apps; app++) {
      const n = Atomics.exchange(a, apps + shard * apps + app, 0);
      if (n !== 0) Atomics.sub(a, app, n);
    }
  }
}
