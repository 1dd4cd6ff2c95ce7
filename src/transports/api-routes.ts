import type { Metrics } from '../runtime/metrics.js';

/** The route template a request path matched, as a bounded label for rt_http_requests_total. */
const TEMPLATES: [RegExp, string][] = [
  [/^\/api\/publish$/, '/api/publish'],
  [/^\/api\/batch$/, '/api/batch'],
  [/^\/api\/channels$/, '/api/channels'],
  [/^\/api\/channels\/[^/]+\/users$/, '/api/channels/:name/users'],
  [/^\/api\/channels\/[^/]+$/, '/api/channels/:name'],
  [/^\/api\/users\/[^/]+\/disconnect$/, '/api/users/:id/disconnect'],
  [/^\/api\/stats$/, '/api/stats'],
  [/^\/api\/tap$/, '/api/tap'],
  [/^\/api\/openapi\.json$/, '/api/openapi.json'],
  // Pusher's HTTP API (src/transports/pusher/http-api.ts)
  [/^\/apps\/[^/]+\/events$/, '/apps/:id/events'],
  [/^\/apps\/[^/]+\/batch_events$/, '/apps/:id/batch_events'],
  [/^\/apps\/[^/]+\/channels$/, '/apps/:id/channels'],
  [/^\/apps\/[^/]+\/channels\/[^/]+\/users$/, '/apps/:id/channels/:name/users'],
  [/^\/apps\/[^/]+\/channels\/[^/]+$/, '/apps/:id/channels/:name'],
  [/^\/apps\/[^/]+\/users\/[^/]+\/terminate_connections$/, '/apps/:id/users/:user/terminate_connections'],
];

function apiRouteOf(path: string): string {
  for (const [re, t] of TEMPLATES) if (re.test(path)) return t;
  return 'other';
}

/**
 * Counts an API request in rt_http_requests_total. Called before the answer is written: a client that
 * reads /metrics right after its answer sees it.
 */
export function countApiRequest(metrics: Metrics, path: string, status: number): void {
  metrics.inc('rt_http_requests_total', { route: apiRouteOf(path), status: String(status) });
}
