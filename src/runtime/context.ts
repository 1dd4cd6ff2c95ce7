/** What every transport on a thread needs, in one object. */
import type { ServerConfig } from '../config/schema.js';
import type { JwtClaims, JwtVerifier } from '../auth/jwt.js';
import type { HandlerRegistry } from '../actors/handlers.js';
import type { Logger } from '../log.js';
import type { Hub } from './hub.js';
import type { SharedStats } from './stats.js';
import type { Metrics } from './metrics.js';
import type { SharedLimits } from '../security/shared-limits.js';
import type { ThreadSampler } from './thread-sampler.js';

export interface ThreadContext {
  thread: number;
  config: ServerConfig;
  hub: Hub;
  verifier: JwtVerifier;
  /**
   * Verifies a token: inline for HS256 (microseconds), on the main thread's piscina compute pool for
   * RS256/ES256 (50–100 µs each) so a reconnect storm does not stall the shard.
   */
  verifyToken(token: string): JwtClaims | Promise<JwtClaims>;
  apiKey: string;
  stats: SharedStats;
  /** This thread's block of the host's metrics registry (see metrics.ts). */
  metrics: Metrics;
  /** The thread's housekeeping tick (thread-sampler.ts): periodic upkeep runs on it, not on timers of its own. */
  sampler: ThreadSampler;
  log: Logger;
  /** True once shutdown began: new connections are refused. */
  draining: boolean;
  /**
   * HTTP requests being answered (see beginRequest): shutdown waits for them, and answers those still
   * running at its deadline.
   */
  inflight: Set<() => void>;
  /** Connection and API limits shared by every thread of the host. */
  limits: SharedLimits;
  /** Values every host sees, with an expiry (Redis with --redis; absent on a server alone). */
  sharedStore?: SharedStore;
  /** Request handlers (rpc / Socket.IO events), set when the Socket.IO gateway registers. */
  handlers?: HandlerRegistry;
}

/** A key/value store shared by every host of a cluster (Socket.IO sessions saved for recovery). */
export interface SharedStore {
  put(key: string, value: Uint8Array, ttlMs: number): Promise<void>;
  /** Gets and deletes. */
  take(key: string): Promise<Uint8Array | null>;
}
