/**
 * What a Redis failure means, in our words. Clients and API callers get a stable `unavailable` code and
 * a sentence they can act on; the driver's own message (ioredis internals such as "Stream isn't
 * writeable and enableOfflineQueue options is false") goes to the server log only.
 */
import { RtError } from '../errors.js';
import { threadLogger } from '../log.js';

/** The driver's words for a command Redis did not answer within its timeout. */
const TIMED_OUT = /Command timed out/i;

const MEANINGS: Array<[RegExp, string]> = [
  [/Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|max retries per request|All sentinels are unreachable|None of startup nodes|Failed to refresh slots cache|Cluster isn't ready/i, 'the connection to Redis is down; rt-actors is reconnecting'],
  // The command was sent and may still run (a paused Redis runs its backlog when it resumes): say so, or
  // a caller retries a publish that then arrives twice.
  [TIMED_OUT, 'Redis did not answer in time, so the outcome is unknown: a publish may still be delivered (a retry can deliver it twice)'],
  [/timed? ?out|ETIMEDOUT/i, 'Redis did not answer in time'],
  [/^LOADING\b/, 'Redis is loading its data after a restart'],
  [/^(READONLY|MASTERDOWN)\b/, 'Redis is failing over (the node is a replica, or its primary is down)'],
  [/^(CLUSTERDOWN|TRYAGAIN|MOVED|ASK)\b/, 'the Redis Cluster is reconfiguring'],
  [/^OOM\b/, 'Redis is out of memory (maxmemory reached)'],
  [/^NOREPLICAS\b/, 'Redis refuses writes: fewer replicas are connected than its min-replicas-to-write asks for'],
  [/^(NOAUTH|WRONGPASS|NOPERM)\b/, 'Redis refused our credentials or permissions'],
  [/^BUSY\b/, 'Redis is busy running a script'],
];

function messageOf(err: unknown): string {
  return String((err as Error)?.message ?? err);
}

/** Once per this long per thread: a stalled Redis fails every operation waiting on it. */
const SLOW_LOG_EVERY_MS = 10_000;
let lastSlowLog = -Infinity;

/**
 * A sentence for a Redis error, without the driver's internals. `read`: the operation only reads, so a
 * timeout cannot have left a publication behind, and saying it may would send an operator looking for one.
 */
export function describeRedisError(err: unknown, read = false): string {
  const text = messageOf(err);
  if (read && TIMED_OUT.test(text)) return 'Redis did not answer in time';
  for (const [re, meaning] of MEANINGS) if (re.test(text)) return meaning;
  return 'Redis returned an error';
}

/**
 * The error a caller sees when an operation needed Redis and Redis failed: 503 `unavailable`. `read`
 * marks an operation that changes nothing in Redis (see describeRedisError).
 */
export function redisUnavailable(err: unknown, read = false): RtError {
  if (err instanceof RtError) return err;
  const log = threadLogger();
  // A connection that drops is logged when it drops (redis.down); a Redis that stops answering keeps its
  // connections, so without this the log said nothing while every caller got 503s.
  if (TIMED_OUT.test(messageOf(err))) {
    const now = Date.now();
    if (now - lastSlowLog >= SLOW_LOG_EVERY_MS) {
      lastSlowLog = now;
      log.warn('Redis did not answer within 5 s: operations waiting on it fail with 503 unavailable (is it paused, swapping, or running a slow command or script?)', { event: 'redis.slow' });
    }
  }
  if (log.enabled('debug')) log.debug('a Redis operation failed', err instanceof Error ? err : { detail: String(err) }, { event: 'redis.error' });
  return new RtError('unavailable', `Redis unavailable: ${describeRedisError(err, read)}; retry shortly`, 503);
}
