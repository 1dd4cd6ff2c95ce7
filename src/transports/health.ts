/** /health (JSON) and /metrics (Prometheus text) for the whole host, read from shared stats. */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { ThreadContext } from '../runtime/context.js';
import { STAT_FIELDS } from '../runtime/stats.js';

const started = Date.now();

export function registerHealth(app: TemplatedApp, ctx: ThreadContext): void {
  const { stats } = ctx;
  const shards = ctx.hub.shards;
  app.get('/health', (res: HttpResponse, _req: HttpRequest) => {
    let alive = 0;
    for (let s = 0; s < shards; s++) if (stats.get(s, 'alive') === 1) alive++;
    const status = ctx.draining ? 'draining' : alive === shards ? 'ok' : 'degraded';
    const body = {
      status,
      workers: { total: shards, alive },
      connections: stats.total('connections'),
      channels: stats.total('channels'),
      uptime: Math.round((Date.now() - started) / 1000),
      shard: ctx.thread,
    };
    res.cork(() => {
      res.writeStatus(status === 'ok' ? '200 OK' : '503 Service Unavailable').writeHeader('content-type', 'application/json').end(JSON.stringify(body));
    });
  });

  app.get('/metrics', (res: HttpResponse) => {
    const lines: string[] = [];
    const metric = (name: string, type: 'gauge' | 'counter', help: string, field: (typeof STAT_FIELDS)[number]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (let t = 0; t <= shards; t++) lines.push(`${name}{thread="${t === shards ? 'main' : t}"} ${stats.get(t, field)}`);
    };
    metric('rt_connections', 'gauge', 'Open client connections.', 'connections');
    metric('rt_subscriptions', 'gauge', 'Channel subscriptions held by connections.', 'subscriptions');
    metric('rt_channels', 'gauge', 'Channel actors alive (owner side).', 'channels');
    metric('rt_deliveries_total', 'counter', 'Messages delivered to connections.', 'delivered');
    metric('rt_publishes_total', 'counter', 'Publishes accepted from clients, the API and server code.', 'published');
    metric('rt_ring_queued_bytes', 'gauge', 'Bytes waiting locally because an inter-thread ring was full.', 'ringQueuedBytes');
    metric('rt_shard_restarts_total', 'counter', 'Times the thread was replaced after a crash.', 'restarts');
    res.cork(() => res.writeHeader('content-type', 'text/plain; version=0.0.4').end(lines.join('\n') + '\n'));
  });
}
