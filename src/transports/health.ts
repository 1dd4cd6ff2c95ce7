/** /health (JSON) and /metrics (Prometheus text) for the whole host, read from shared memory. */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { ThreadContext } from '../runtime/context.js';
import { REDIS_FAMILIES } from '../runtime/metric-families.js';
import { renderProcessMetrics } from '../runtime/process-metrics.js';
import { statusLine } from './http.js';
import { bridged } from '../bridge/setup.js';
import { getAndHead } from './head.js';

export interface HealthBody {
  status: 'ok' | 'degraded' | 'draining';
  /** This host's id (--host-id, or generated at start). */
  host: string;
  /** `stuck`: shards alive but standing still for longer than --stuck-shard-timeout. */
  workers: { total: number; alive: number; stuck: number };
  connections: number;
  channels: number;
  uptime: number;
  redis?: { connected: number; shards: number };
  shard: number;
}

export function healthOf(ctx: ThreadContext): HealthBody {
  const { stats } = ctx;
  const shards = ctx.hub.shards;
  let alive = 0;
  let stuck = 0;
  for (let s = 0; s < shards; s++) {
    if (stats.get(s, 'alive') !== 1) continue;
    alive++;
    if (stats.get(s, 'stuck') === 1) stuck++;
  }
  const status = ctx.draining ? 'draining' : alive === shards && stuck === 0 ? 'ok' : 'degraded';
  return {
    status,
    host: ctx.config.hostId,
    workers: { total: shards, alive, stuck },
    connections: stats.total('connections'),
    channels: stats.total('channels'),
    // The server's, not this thread's: the same on every shard, and not reset when one is replaced.
    uptime: Math.round((Date.now() - stats.get(shards, 'startedAt')) / 1000),
    // With --redis: shards connected to it. Not part of `status`: a host keeps serving its own
    // connections while Redis is away, and a load balancer should not drop every host at once.
    ...(bridged(ctx.config) ? { redis: { connected: Array.from({ length: shards }, (_, s) => stats.get(s, 'redisUp')).filter((v) => v === 1).length, shards } } : {}),
    shard: ctx.thread,
  };
}

/** Label of a thread in metrics: its shard index, or "main" for the supervisor. */
export function threadName(ctx: ThreadContext, t: number): string {
  return t === ctx.hub.shards ? 'main' : String(t);
}

export function renderMetrics(ctx: ThreadContext): string {
  let text = ctx.metrics.render((t) => threadName(ctx, t));
  if (!bridged(ctx.config)) {
    // Redis families only mean something with --redis: drop their lines rather than export zeros.
    const skip = new Set<string>(REDIS_FAMILIES);
    text = text
      .split('\n')
      .filter((line) => {
        const name = line.startsWith('#') ? line.split(' ')[2] : line.split(/[{ ]/)[0];
        return !skip.has(name!);
      })
      .join('\n');
  }
  return renderProcessMetrics() + text;
}

export function registerHealth(app: TemplatedApp, ctx: ThreadContext): void {
  const counted = (route: '/health' | '/metrics', status: number) => ctx.metrics.inc('rt_http_requests_total', { route, status: String(status) });

  const health = (res: HttpResponse) => {
    const body = healthOf(ctx);
    const code = body.status === 'ok' ? 200 : 503;
    counted('/health', code);
    res.cork(() => {
      res.writeStatus(statusLine(code)).writeHeader('content-type', 'application/json').writeHeader('cache-control', 'no-store');
      res.end(JSON.stringify(body));
    });
  };
  // Load balancers and uptime checkers probe with GET or HEAD.
  getAndHead(app, '/health', health);

  getAndHead(app, '/metrics', (res: HttpResponse) => {
    const text = renderMetrics(ctx);
    counted('/metrics', 200);
    res.cork(() => res.writeHeader('content-type', 'text/plain; version=0.0.4; charset=utf-8').end(text));
  });
}
