/**
 * GET /client.js: the browser bundle of the client library (built by scripts/bundle-client.mjs into
 * dist/client.js), so a page can use the server it talks to as its CDN:
 *   <script src="https://rt.example.com/client.js"></script>  →  window.RtActors
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { ThreadContext } from '../runtime/context.js';
import { sendJson } from './http.js';
import { getAndHead } from './head.js';

/** dist/src/transports/client-bundle.js → dist/client.js */
export const CLIENT_BUNDLE_URL = new URL('../../client.js', import.meta.url);

let cached: { body: Buffer; etag: string } | null | undefined;

function load(): { body: Buffer; etag: string } | null {
  if (cached !== undefined) return cached;
  try {
    const body = readFileSync(CLIENT_BUNDLE_URL);
    cached = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
  } catch {
    // Not cached: a build that runs while the server is up makes it appear without a restart.
    return null;
  }
  return cached;
}

/**
 * If-None-Match as RFC 9110 §13.1.2 reads it: a list of tags (or `*`), compared weakly. A proxy that
 * compresses the bundle (nginx with gzip on for JavaScript) hands the browser a weak `W/"…"` tag, which
 * comes back as such: an exact string match answered every revalidation with the whole bundle.
 */
export function etagMatches(header: string, etag: string): boolean {
  if (header === '') return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || (tag.startsWith('W/') ? tag.slice(2) : tag) === etag;
  });
}

export function registerClientBundle(app: TemplatedApp, ctx: ThreadContext): void {
  getAndHead(app, '/client.js', (res: HttpResponse, req) => {
    const state = { aborted: false };
    res.onAborted(() => (state.aborted = true));
    const bundle = load();
    if (!bundle) {
      ctx.log.warn(`GET /client.js: ${CLIENT_BUNDLE_URL.pathname} is missing`);
      sendJson(res, state, 404, { error: { code: 'not_found', message: 'client bundle not built: run `npm run build`' } });
      return;
    }
    const fresh = etagMatches(req.getHeader('if-none-match'), bundle.etag);
    res.cork(() => {
      res.writeStatus(fresh ? '304 Not Modified' : '200 OK');
      res.writeHeader('etag', bundle.etag);
      res.writeHeader('cache-control', 'public, max-age=300');
      res.writeHeader('access-control-allow-origin', '*');
      if (fresh) {
        res.endWithoutBody();
        return;
      }
      res.writeHeader('content-type', 'application/javascript; charset=utf-8');
      res.end(bundle.body);
    });
  });
}
