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

const ORIGIN_PATTERN = /^([a-z][a-z0-9+.-]*):\/\/([^/?#\s]+)\/*$/i;
const DEFAULT_PORTS: Record<string, string> = { http: '80', https: '443' };

/**
 * Why an --allowed-origins entry can never match a browser's Origin, or undefined when it can. A
 * browser sends `scheme://host[:port]`, the default port left out: `app.example.com` or
 * `https://app.example.com:443` would refuse every request from the origin the operator meant.
 */
export function originPatternProblem(entry: string): string | undefined {
  if (entry === '*') return undefined;
  const m = ORIGIN_PATTERN.exec(entry);
  if (!m) {
    if (!entry.includes('://')) return `"${entry}" has no scheme: browsers send one in Origin, write https://${entry.replace(/^\/+/, '')}`;
    return `"${entry}" is not an origin: expected scheme://host[:port], without a path, e.g. https://app.example.com`;
  }
  const [, scheme, hostPort] = m;
  const port = /:(\d+)$/.exec(hostPort!)?.[1];
  if (port !== undefined && DEFAULT_PORTS[scheme!.toLowerCase()] === port) {
    return `"${entry}": browsers leave the default port out of Origin, write ${scheme}://${hostPort!.slice(0, -port.length - 1)}`;
  }
  return undefined;
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
