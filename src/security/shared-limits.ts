/**
 * Limits that must hold across shards (connections per host and per IP, connection rate per IP, API
 * requests per key) kept in one SharedArrayBuffer every thread updates with Atomics — no messages, no
 * locks. IPs hash into a fixed table; two IPs sharing a slot share its limits, which errs on the strict
 * side and bounds memory whatever the number of distinct clients.
 */
const SLOTS = 1 << 16;
/** Per slot: open connections, rate window (second), connections opened in that window. */
const FIELDS = 3;
/** Global cells after the table: host connections, API window, API count. */
const GLOBAL = SLOTS * FIELDS;

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
    if (this.s.connectionRatePerIp > 0 && !this.window(slot + 1, this.s.connectionRatePerIp, nowMs)) return 'connection_rate_limited';
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

  /** Undoes admit() when the connection closes. */
  release(ip: string): void {
    if (this.s.maxConnections > 0) Atomics.sub(this.a, GLOBAL, 1);
    if (this.s.maxConnectionsPerIp > 0) Atomics.sub(this.a, slotOf(ip), 1);
  }

  /** One API request; false when the key is over --api-rate-limit this second. */
  apiRequest(nowMs = Date.now()): boolean {
    return this.s.apiRateLimit <= 0 || this.window(GLOBAL + 1, this.s.apiRateLimit, nowMs);
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
