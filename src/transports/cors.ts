/**
 * CORS for the browser-facing HTTP transports (/sse, /poll). A page of another origin may use them
 * only when its origin is in --cors-origins (or the list holds '*'); same-origin pages always may.
 * Refusing outright (403), rather than merely omitting the header, keeps a foreign page from opening
 * sessions the browser would then hide from it.
 */
import type { HttpResponse } from 'uWebSockets.js';
import { RtError } from '../errors.js';
import type { Req } from './http.js';

export function originAllowed(allowed: readonly string[], origin: string | undefined, host: string | undefined): boolean {
  if (!origin) return true; // not a browser cross-origin request (curl, backends, same-origin GETs)
  if (allowed.includes('*') || allowed.includes(origin)) return true;
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false; // "null" (sandboxed frames, file://) or garbage
  }
}

/** Headers to add to an allowed request's answer, or an error to answer with. */
export function corsFor(allowed: readonly string[], req: Req): Record<string, string> | RtError {
  const origin = req.headers['origin'];
  if (!originAllowed(allowed, origin, req.headers['host'])) {
    return new RtError('forbidden', `origin ${JSON.stringify(origin).slice(0, 100)} is not allowed: add it to --cors-origins`, 403);
  }
  if (!origin) return {};
  return { 'access-control-allow-origin': origin, vary: 'origin' };
}

/** Answers a preflight (OPTIONS) for the given methods. */
export function preflight(res: HttpResponse, allowed: readonly string[], origin: string, host: string, methods: string): void {
  res.cork(() => {
    if (!originAllowed(allowed, origin || undefined, host)) {
      res.writeStatus('403 Forbidden').writeHeader('content-type', 'application/json');
      res.end(JSON.stringify({ error: { code: 'forbidden', message: 'origin not allowed: add it to --cors-origins' } }));
      return;
    }
    res.writeStatus('204 No Content');
    if (origin) res.writeHeader('access-control-allow-origin', origin).writeHeader('vary', 'origin');
    res.writeHeader('access-control-allow-methods', methods);
    res.writeHeader('access-control-allow-headers', 'authorization, content-type, last-event-id');
    res.writeHeader('access-control-max-age', '600');
    res.end();
  });
}
