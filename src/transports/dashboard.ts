/**
 * The operator dashboard (--dashboard): one static page and its script, read once from static/dashboard/
 * at the package root. The page holds no data; it signs in with the API key or --dashboard-token and
 * reads /api/stats, /api/tap and /api/channels/… with it in the Authorization header.
 */
import { readFileSync } from 'node:fs';
import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { ThreadContext } from '../runtime/context.js';
import { getAndHead } from './head.js';
import { statusLine } from './http.js';

const ROOT = new URL('../../../static/dashboard/', import.meta.url);

const FILES: Record<string, { file: string; type: string }> = {
  '/dashboard': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** The page runs only its own script and talks only to this server. */
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

export function registerDashboard(app: TemplatedApp, ctx: ThreadContext): void {
  if (!ctx.config.dashboard) return;
  for (const [path, { file, type }] of Object.entries(FILES)) {
    const body = readFileSync(new URL(file, ROOT));
    getAndHead(app, path, (res: HttpResponse) => {
      ctx.metrics.inc('rt_http_requests_total', { route: '/dashboard', status: '200' });
      res.cork(() => {
        res.writeStatus(statusLine(200)).writeHeader('content-type', type);
        for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.writeHeader(k, v);
        res.end(body);
      });
    });
  }
  getAndHead(app, '/dashboard/', (res: HttpResponse) => {
    res.cork(() => res.writeStatus('301 Moved Permanently').writeHeader('location', '/dashboard').end());
  });
}
