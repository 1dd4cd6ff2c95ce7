/**
 * Every metric family the server exports (besides the process_* ones read at scrape time, see
 * transports/health.ts), with the values each label may take. docs/deployment.md documents each one;
 * test/metrics.test.ts checks every documented family is exported.
 */
import type { FamilySpec } from './metrics.js';

export const TRANSPORTS = ['websocket', 'sse', 'polling', 'memory', 'tap', 'other'] as const;
export const PROTOCOLS = ['native', 'socketio', 'pusher', 'other'] as const;

/** Why a connection, request or message was refused (rt_refusals_total{reason}). */
export const REFUSAL_REASONS = [
  'rate_limit', 'auth', 'origin', 'connection_limit', 'channel_limit', 'payload_too_large', 'slow_consumer', 'malformed', 'overloaded',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** Route templates of the HTTP API and the operator endpoints (rt_http_requests_total{route}). */
export const HTTP_ROUTES = [
  '/api/publish', '/api/batch', '/api/channels', '/api/channels/:name', '/api/channels/:name/users', '/api/users/:id/disconnect',
  '/api/stats', '/api/tap', '/api/openapi.json', '/health', '/metrics', '/dashboard',
  '/apps/:id/events', '/apps/:id/batch_events', '/apps/:id/channels', '/apps/:id/channels/:name', '/apps/:id/channels/:name/users',
  '/apps/:id/users/:user/terminate_connections', 'other',
] as const;
export const HTTP_STATUSES = ['200', '204', '400', '401', '403', '404', '405', '408', '411', '413', '415', '429', '500', '503', '504', 'other'] as const;

export const ACTOR_HOOKS = ['init', 'authorize', 'onJoin', 'onLeave', 'onMessage', 'onPublish', 'onTimer', 'onComputed', 'onStop'] as const;

/** Seconds: 100 µs … 10 s, for in-process latency that is usually sub-millisecond. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

const T = { transport: TRANSPORTS, protocol: PROTOCOLS };

export const FAMILIES = [
  { name: 'rt_up', type: 'gauge', perThread: true, help: 'Whether the thread is running (1) or down/restarting (0); thread="main" is the supervisor.' },
  { name: 'rt_heap_used_bytes', type: 'gauge', perThread: true, help: 'V8 heap in use by the thread.' },
  { name: 'rt_heap_total_bytes', type: 'gauge', perThread: true, help: 'V8 heap reserved by the thread.' },
  { name: 'rt_event_loop_delay_seconds', type: 'gauge', perThread: true, labels: { stat: ['mean', 'p50', 'p99', 'max'] }, help: 'How late the thread\'s event loop ran over the last second (a probe timer\'s lateness against when it was due).' },
  { name: 'rt_event_loop_delay_resolution_seconds', type: 'gauge', perThread: true, help: 'Interval of the thread\'s delay probe: 0.02 while the thread works, 0.2 while it rests (under 2 % busy).' },
  { name: 'rt_event_loop_utilization', type: 'gauge', perThread: true, help: 'Share of the last second the thread spent running JavaScript rather than waiting (0-1).' },
  { name: 'rt_connections', type: 'gauge', perThread: true, labels: T, help: 'Open client connections, by transport and protocol.' },
  { name: 'rt_connections_opened_total', type: 'counter', labels: T, help: 'Client connections accepted, by transport and protocol.' },
  { name: 'rt_messages_in_total', type: 'counter', labels: T, help: 'Messages (frames, events) received from clients, by transport and protocol.' },
  { name: 'rt_messages_out_total', type: 'counter', labels: T, help: 'Publications and user messages delivered to clients, by transport and protocol.' },
  { name: 'rt_subscriptions', type: 'gauge', perThread: true, help: 'Channel subscriptions held by connections.' },
  { name: 'rt_channels', type: 'gauge', perThread: true, help: 'Channel actors alive (owner side).' },
  { name: 'rt_publishes_total', type: 'counter', help: 'Publishes accepted from clients, the API and server code.' },
  { name: 'rt_deliveries_total', type: 'counter', help: 'Messages delivered to connections (every protocol).' },
  { name: 'rt_ring_queued_bytes', type: 'gauge', perThread: true, help: 'Bytes waiting locally because an inter-thread ring was full.' },
  { name: 'rt_overloaded_refusals_total', type: 'counter', help: "New requests refused with 'overloaded' because the target thread's queue was above --ring-queue-high." },
  { name: 'rt_overloaded_peers', type: 'gauge', perThread: true, help: 'Peer threads this thread is refusing new requests to right now.' },
  { name: 'rt_slow_consumer_drops_total', type: 'counter', help: "Connections closed because uWS dropped a message for a send buffer past its own limit, before the slow-consumer sweep closed them (the client had a gap and resumes). 0 unless bursts outrun the sweep; Socket.IO WebSockets, not swept, count here once each." },
  { name: 'rt_shard_restarts_total', type: 'counter', help: 'Shards replaced after a crash.' },
  { name: 'rt_stuck_shards', type: 'gauge', help: 'Shards whose event loop has stood still for longer than --stuck-shard-timeout (a synchronous loop in an actor hook, most likely).' },
  { name: 'rt_refusals_total', type: 'counter', labels: { reason: REFUSAL_REASONS }, help: 'Connections, requests and messages refused, by reason.' },
  { name: 'rt_http_requests_total', type: 'counter', labels: { route: HTTP_ROUTES, status: HTTP_STATUSES }, help: 'HTTP API and operator endpoint requests, by route and status.' },
  { name: 'rt_publish_deliver_seconds', type: 'histogram', buckets: LATENCY_BUCKETS, help: 'Time from a publish entering the server to its delivery on each thread with subscribers (publications sequenced on this host).' },
  { name: 'rt_actor_hook_seconds', type: 'histogram', buckets: LATENCY_BUCKETS, labels: { hook: ACTOR_HOOKS }, help: 'Time spent in custom channel actor hooks, until a returned promise settles.' },
  { name: 'rt_actor_hook_failures_total', type: 'counter', help: 'Custom actor hooks that threw, rejected or missed their deadline (refusals with ActorError excluded).' },
  { name: 'rt_actor_restarts_total', type: 'counter', help: 'Custom channel actors restarted with fresh state after repeated hook failures.' },
  { name: 'rt_actor_compute_tasks_total', type: 'counter', help: "Custom actors' ctx.compute tasks finished on the compute pool." },
  { name: 'rt_http_requests_in_flight', type: 'gauge', perThread: true, shardsOnly: true, help: 'HTTP requests (API, SSE and long-polling POSTs) being read or handled; shutdown waits for them.' },
  // Redis bridge (shards only; zero without --redis)
  { name: 'rt_redis_up', type: 'gauge', perThread: true, shardsOnly: true, help: 'Whether the shard is connected to Redis (1) or reconnecting (0); absent without --redis.' },
  { name: 'rt_redis_invalid_messages_total', type: 'counter', help: 'Malformed messages received from Redis (e.g. Laravel payloads), ignored.' },
  { name: 'rt_redis_recovered_total', type: 'counter', help: 'Publications fetched from the Redis stream to fill a gap in a subscription.' },
  { name: 'rt_redis_resyncs_total', type: 'counter', help: 'Times subscribers of a channel were told to resync (unrecoverable gap).' },
  { name: 'rt_redis_errors_total', type: 'counter', help: 'Redis operations that failed (unreachable, timeout).' },
  { name: 'rt_redis_tracked_channels', type: 'gauge', perThread: true, shardsOnly: true, help: "Channels the shard keeps custom-actor bookkeeping for (lease owners learned, recent Laravel broadcast claims); back near 0 once channels go unused." },
] as const satisfies readonly FamilySpec[];

export type FamilyName = (typeof FAMILIES)[number]['name'];

/** Families only exported with --redis. */
export const REDIS_FAMILIES: readonly FamilyName[] = ['rt_redis_up', 'rt_redis_invalid_messages_total', 'rt_redis_recovered_total', 'rt_redis_resyncs_total', 'rt_redis_errors_total', 'rt_redis_tracked_channels'];
