// The endpoints the start log names: those this configuration serves, so a URL copied from the log
// works (with --transports=sse,polling, /ws answers 404 and must not be offered).
import type { ServerConfig } from '../config/schema.js';
import { resolveApps } from '../transports/pusher/apps.js';

const NATIVE_PATHS: Record<string, { scheme: 'ws' | 'http'; path: string }> = {
  ws: { scheme: 'ws', path: '/ws' },
  sse: { scheme: 'http', path: '/sse' },
  polling: { scheme: 'http', path: '/poll' },
};

/**
 * `host:port` as a URL writes it: an IPv6 address in brackets (`ws://::1:6001` is no URL), and the
 * wildcard addresses as localhost (a client cannot connect to `::`).
 */
export function urlHostPort(host: string, port: number): string {
  if (host === '' || host === '0.0.0.0' || host === '::') return `localhost:${port}`;
  return hostPort(host, port);
}

/** `host:port` for the start line: the host as given, an IPv6 address in brackets. */
export function listenHostPort(host: string, port: number): string {
  return host === '' ? `all interfaces:${port}` : hostPort(host, port);
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function servedEndpoints(config: ServerConfig, port: number): string[] {
  const s = config.tlsCert ? 's' : '';
  const base = urlHostPort(config.host, port);
  const url = (scheme: 'ws' | 'http', path: string) => `${scheme}${s}://${base}${path}`;
  const out = config.transports.flatMap((t) => (NATIVE_PATHS[t] ? [url(NATIVE_PATHS[t].scheme, NATIVE_PATHS[t].path)] : []));
  out.push(url('http', '/socket.io/'));
  const apps = resolveApps(config);
  if (apps.length > 0) out.push(url('ws', `/app/${apps[0]!.key}`), url('http', `/apps/${apps[0]!.id}/`));
  out.push(url('http', '/api/publish'), url('http', '/health'), url('http', '/metrics'));
  if (config.dashboard) out.push(url('http', '/dashboard'));
  return out;
}
