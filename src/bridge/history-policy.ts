/**
 * History bounds per channel pattern (`--history-patterns 'chat-*=500/1h,ticker.*=10/30s'`). Parsed
 * once at start so a typo stops the server with a message naming the entry, not at the first publish.
 */
import { channelAllowed } from '../auth/jwt.js';
import type { HistoryBounds } from './broker.js';

export interface HistoryRule {
  pattern: string;
  bounds: HistoryBounds;
}

const DURATION: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export class HistoryPatternError extends Error {}

export function parseHistoryPatterns(entries: readonly string[]): HistoryRule[] {
  return entries.map((entry) => {
    // Channel patterns may themselves contain '=', so the bounds are what follows the last one.
    const eq = entry.lastIndexOf('=');
    const pattern = eq > 0 ? entry.slice(0, eq).trim() : '';
    const spec = eq > 0 ? entry.slice(eq + 1).trim() : '';
    const m = /^(\d+)(?:\/(\d+(?:\.\d+)?)(ms|s|m|h|d)?)?$/.exec(spec);
    if (!pattern || !m) {
      throw new HistoryPatternError(`history pattern "${entry}" must look like 'pattern=size/ttl', e.g. 'chat-*=500/1h' or 'ticker.*=10/30s'`);
    }
    const size = Number(m[1]);
    const ttlMs = m[2] === undefined ? NaN : Number(m[2]) * DURATION[m[3] ?? 's']!;
    if (size > 1_000_000) throw new HistoryPatternError(`history pattern "${entry}": size must be at most 1000000`);
    if (m[2] !== undefined && !(ttlMs >= 1000)) throw new HistoryPatternError(`history pattern "${entry}": ttl must be at least 1s`);
    return { pattern, bounds: { size, ttlMs } };
  });
}

/**
 * Bounds for one channel: the actor definition's own `history`, else the first matching pattern, else
 * the server-wide --history-size / --history-ttl. A pattern without a ttl keeps the server-wide ttl.
 */
export function boundsFor(
  channel: string,
  rules: readonly HistoryRule[],
  fallback: HistoryBounds,
  def?: { size?: number; ttlSeconds?: number },
): HistoryBounds {
  const rule = rules.find((r) => channelAllowed([r.pattern], channel));
  const base = rule ? { size: rule.bounds.size, ttlMs: Number.isNaN(rule.bounds.ttlMs) ? fallback.ttlMs : rule.bounds.ttlMs } : fallback;
  return {
    size: def?.size ?? base.size,
    ttlMs: def?.ttlSeconds !== undefined ? def.ttlSeconds * 1000 : base.ttlMs,
  };
}
