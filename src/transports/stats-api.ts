/**
 * GET /api/stats: the host's figures as JSON, for the dashboard and for scripts that would rather not
 * parse Prometheus text. Counters are totals since start; a reader takes the difference between two
 * answers to get rates (the dashboard polls every second).
 */
import type { ThreadContext } from '../runtime/context.js';
import { REFUSAL_REASONS } from '../runtime/metric-families.js';
import { processFigures } from '../runtime/process-metrics.js';
import { healthOf, threadName, type HealthBody } from './health.js';
import { bridged } from '../bridge/setup.js';
import { RtError } from '../errors.js';
import { appSuffixOf } from '../runtime/app-scope.js';

export interface ThreadStats {
  thread: string;
  up: boolean;
  connections: number;
  subscriptions: number;
  channels: number;
  heapUsedBytes: number;
  eventLoopDelayP99Seconds: number;
  eventLoopUtilization: number;
  redisUp?: boolean;
}

export interface StatsBody {
  time: number;
  /** This host's id (--host-id). */
  host: string;
  status: string;
  uptime: number;
  workers: HealthBody['workers'];
  threads: ThreadStats[];
  connections: { total: number; byKind: { transport: string; protocol: string; count: number }[] };
  messages: { in: number; out: number; published: number; delivered: number };
  refusals: Record<string, number>;
  http: { route: string; status: string; count: number }[];
  latency: { count: number; sumSeconds: number; p50Seconds: number | null; p99Seconds: number | null; buckets: { le: number; count: number }[] };
  topChannels: { name: string; subscribers: number; presence?: number; offset: number }[];
  redis: { enabled: boolean; connected?: number; shards?: number };
  process: { residentBytes: number; cpuSeconds: number; openFds: number | null; maxFds: number | null };
}

const TOP_CHANNELS = 10;
/**
 * Listing every channel walks every owner (every host with Redis): with many channels and a dashboard
 * polling each second that is real work, so the busiest channels are refreshed at most this often.
 */
const TOP_CHANNELS_TTL_MS = 5000;
let topCache: { at: number; top: StatsBody['topChannels'] } | undefined;
let topRefresh: Promise<void> | undefined;
/**
 * How long an answer waits for the list. A stuck or overloaded shard answers only at --request-timeout
 * (15 s): every answer, and the dashboard polling each second, would hang that long, just when the
 * operator is looking. The listing carries on meanwhile, and the next answers get it.
 */
const TOP_CHANNELS_WAIT_MS = 1000;

async function topChannels(ctx: ThreadContext): Promise<StatsBody['topChannels']> {
  if (topCache && Date.now() - topCache.at < TOP_CHANNELS_TTL_MS) return topCache.top;
  // One listing at a time, whatever the number of dashboards asking.
  const refresh = (topRefresh ??= refreshTop(ctx).finally(() => (topRefresh = undefined)));
  // Awaited below only until the deadline: a later failure must not go unhandled.
  refresh.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([refresh, new Promise<void>((resolve) => (timer = setTimeout(resolve, TOP_CHANNELS_WAIT_MS)))]);
  clearTimeout(timer);
  return topCache?.top ?? [];
}

async function refreshTop(ctx: ThreadContext): Promise<void> {
  let channels;
  try {
    channels = await ctx.hub.channels();
  } catch (err) {
    // With --redis the list is read from Redis. An outage is what the operator watches the figures for:
    // they still answer, with the last list this host read (none yet: empty).
    if (!(err instanceof RtError)) throw err;
    return;
  }
  // Like the rest of /api/*, the default app's channels only: another Pusher app's are named inside with
  // its suffix (" @<id>"), which the inspector and /api/channels/:name refuse as a channel name.
  channels = channels.filter((c) => appSuffixOf(c.name) === '');
  const top = channels.sort((a, b) => b.subscribers - a.subscribers || (a.name < b.name ? -1 : 1)).slice(0, TOP_CHANNELS);
  topCache = { at: Date.now(), top: top.map((c) => ({ ...c })) };
}

/** The bucket bound under which `q` of the observations fall (an upper estimate, as Prometheus does). */
function quantile(buckets: { le: number; count: number }[], total: number, q: number): number | null {
  if (total === 0) return null;
  const want = q * total;
  for (const b of buckets) if (b.count >= want) return b.le;
  return buckets.at(-1)?.le ?? null;
}

export async function collectStats(ctx: ThreadContext): Promise<StatsBody> {
  const m = ctx.metrics;
  const health = healthOf(ctx);
  const threads: ThreadStats[] = [];
  for (let t = 0; t <= ctx.hub.shards; t++) {
    const th: ThreadStats = {
      thread: threadName(ctx, t),
      up: m.value('rt_up', undefined, t) === 1,
      connections: m.list('rt_connections', true).filter((s) => s.thread === t).reduce((n, s) => n + s.value, 0),
      subscriptions: m.value('rt_subscriptions', undefined, t),
      channels: m.value('rt_channels', undefined, t),
      heapUsedBytes: m.value('rt_heap_used_bytes', undefined, t),
      eventLoopDelayP99Seconds: m.value('rt_event_loop_delay_seconds', { stat: 'p99' }, t),
      eventLoopUtilization: m.value('rt_event_loop_utilization', undefined, t),
    };
    if (bridged(ctx.config) && t < ctx.hub.shards) th.redisUp = ctx.stats.get(t, 'redisUp') === 1;
    threads.push(th);
  }
  const byKind = m.list('rt_connections').map((s) => ({ transport: s.labels.transport!, protocol: s.labels.protocol!, count: s.value }));
  const sumOf = (name: 'rt_messages_in_total' | 'rt_messages_out_total') => m.list(name).reduce((n, s) => n + s.value, 0);
  const refusals: Record<string, number> = {};
  for (const reason of REFUSAL_REASONS) refusals[reason] = m.value('rt_refusals_total', { reason });
  const lat = m.histogram('rt_publish_deliver_seconds');
  const top = await topChannels(ctx);
  const p = processFigures();
  return {
    time: Date.now(),
    host: health.host,
    status: health.status,
    uptime: health.uptime,
    workers: health.workers,
    threads,
    connections: { total: byKind.reduce((n, k) => n + k.count, 0), byKind },
    messages: { in: sumOf('rt_messages_in_total'), out: sumOf('rt_messages_out_total'), published: m.value('rt_publishes_total'), delivered: m.value('rt_deliveries_total') },
    refusals,
    http: m.list('rt_http_requests_total').map((s) => ({ route: s.labels.route!, status: s.labels.status!, count: s.value })),
    // The buckets let a reader take the quantiles of a recent window (the difference of two answers), as
    // the dashboard does: those since start move little once the process has run a while.
    latency: { count: lat.count, sumSeconds: lat.sum, p50Seconds: quantile(lat.buckets, lat.count, 0.5), p99Seconds: quantile(lat.buckets, lat.count, 0.99), buckets: lat.buckets },
    topChannels: top,
    redis: bridged(ctx.config) ? { enabled: true, ...health.redis! } : { enabled: false },
    process: { residentBytes: p.residentBytes, cpuSeconds: p.cpuUserSeconds + p.cpuSystemSeconds, openFds: p.openFds ?? null, maxFds: p.maxFds ?? null },
  };
}
