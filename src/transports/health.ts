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
      // With --redis: shards connected to it. Not part of `status`: a host keeps serving its own
      // connections while Redis is away, and a load balancer should not drop every host at once.
      ...(ctx.config.redis ? { redis: { connected: Array.from({ length: shards }, (_, s) => stats.get(s, 'redisUp')).filter((v) => v === 1).length, shards } } : {}),
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
    metric('rt_heap_used_bytes', 'gauge', 'V8 heap in use by the thread.', 'heapUsed');
    metric('rt_actor_hook_failures_total', 'counter', 'Channel actor hooks that threw, rejected or missed their deadline (refusals with ActorError excluded).', 'actorFailures');
    metric('rt_actor_restarts_total', 'counter', 'Channel actors restarted with fresh state after repeated hook failures.', 'actorRestarts');
    metric('rt_actor_compute_tasks_total', 'counter', "Channel actors' ctx.compute tasks finished on the compute pool.", 'actorComputed');
    if (ctx.config.redis) {
      metric('rt_redis_up', 'gauge', 'Whether the shard is connected to Redis (1) or reconnecting (0).', 'redisUp');
      metric('rt_redis_invalid_messages_total', 'counter', 'Malformed messages received from Redis (e.g. Laravel payloads), ignored.', 'redisInvalid');
      metric('rt_redis_recovered_total', 'counter', 'Publications fetched from the Redis stream to fill a gap in a subscription.', 'redisRecovered');
      metric('rt_redis_resyncs_total', 'counter', 'Times subscribers of a channel were told to resync (unrecoverable gap).', 'redisResyncs');
      metric('rt_redis_errors_total', 'counter', 'Redis operations that failed (unreachable, timeout).', 'redisErrors');
    }
    res.cork(() => res.writeHeader('content-type', 'text/plain; version=0.0.4').end(lines.join('\n') + '\n'));
  });
}
