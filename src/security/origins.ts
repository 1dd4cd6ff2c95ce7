/**
 * Browser origin checks. Browsers send `Origin` on WebSocket upgrades and cross-origin requests; other
 * clients (backends, native apps) send none and are not subject to it. Allowed: the server's own host,
 * and the --allowed-origins list (exact origins, `*` wildcards inside them, or '*' for any).
 */
export function originAllowed(origin: string | undefined, host: string | undefined, allowed: readonly string[]): boolean {
  if (!origin) return true;
  if (allowed.includes('*')) return true;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return false; // "null" (sandboxed iframes, file://) and garbage
  }
  if (host && o.host.toLowerCase() === host.toLowerCase()) return true;
  const normalized = `${o.protocol}//${o.host}`.toLowerCase();
  return allowed.some((pattern) => matchOrigin(pattern.toLowerCase().replace(/\/+$/, ''), normalized));
}

const compiled = new Map<string, RegExp>();

function matchOrigin(pattern: string, origin: string): boolean {
  if (!pattern.includes('*')) return pattern === origin;
  let re = compiled.get(pattern);
  if (!re) {
    // Patterns come from the operator's config, not from clients. '*' stands for one or more DNS labels.
    const body = pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[a-z0-9-]+(?:\\.[a-z0-9-]+)*');
    re = new RegExp(`^${body}$`);
    compiled.set(pattern, re);
  }
  return re.test(origin);
}

/** CORS response headers for an allowed cross-origin request (none for same-origin or no Origin). */
export function corsHeaders(origin: string | undefined): Record<string, string> {
  if (!origin) return {};
  return {
    'access-control-allow-origin': origin,
    'access-control-allow-credentials': 'true',
    vary: 'Origin',
  };
}

export const CORS_PREFLIGHT_HEADERS: Record<string, string> = {
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'authorization, content-type, last-event-id, x-socket-id',
  'access-control-max-age': '600',
};
