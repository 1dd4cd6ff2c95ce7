/**
 * `rt-actors health`: asks a running server on this machine for GET /health, with the configuration
 * `start` would read (flags, RT_* environment, config file), so a container or unit probes the scheme,
 * interface and port the server really serves — https with --tls-cert, a --host that is not loopback.
 */
import http from 'node:http';
import https from 'node:https';
import type { ServerConfig } from '../config/schema.js';

export interface HealthAnswer {
  /** HTTP status, or 0 when no answer came. */
  code: number;
  /** The body's `status` (ok, degraded, draining), or why there was no answer. */
  status: string;
}

/** The address a local probe uses: the bound interface, or loopback when the server binds all of them. */
export function probeUrl(config: Pick<ServerConfig, 'host' | 'port' | 'tlsCert'>): string {
  const any = config.host === '' || config.host === '0.0.0.0' || config.host === '::';
  const host = any ? '127.0.0.1' : config.host.includes(':') ? `[${config.host}]` : config.host;
  return `${config.tlsCert ? 'https' : 'http'}://${host}:${config.port}/health`;
}

export function probeHealth(url: string, timeoutMs: number): Promise<HealthAnswer> {
  return new Promise((resolve) => {
    // The server's own certificate is probed over this machine's own interfaces: whether a browser
    // would trust it is not what a health check asks.
    const get = url.startsWith('https:') ? https.get(url, { rejectUnauthorized: false, timeout: timeoutMs }) : http.get(url, { timeout: timeoutMs });
    get.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body.length < 65536 ? (body += c) : undefined));
      res.on('end', () => {
        let status = `HTTP ${res.statusCode}`;
        try {
          const s = (JSON.parse(body) as { status?: unknown }).status;
          if (typeof s === 'string') status = s;
        } catch {
          /* not ours: the status code says enough */
        }
        resolve({ code: res.statusCode ?? 0, status });
      });
    });
    get.on('timeout', () => get.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    get.on('error', (err: NodeJS.ErrnoException) => resolve({ code: 0, status: err.code ?? err.message }));
  });
}
