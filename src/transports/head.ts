/**
 * HEAD requests, as HTTP defines them (RFC 9110 §9.3.2): the status and headers GET would give, and never
 * a body. A body after a HEAD answer is read by a keep-alive client or proxy (nginx's upstream keepalive)
 * as the start of the next response, which then fails for a request that had nothing to do with it.
 *
 * One mechanism for every route: a GET route registered with `getAndHead` answers HEAD by running the
 * same handler with a response that counts the body instead of sending it; a catch-all that sees a HEAD
 * request wraps its response with `bodiless`. Streaming GET routes (SSE, long-polling) are not given HEAD:
 * it would open a session.
 */
import type { HttpRequest, HttpResponse, RecognizedString, TemplatedApp } from 'uWebSockets.js';

function byteLength(chunk: RecognizedString | undefined): number {
  if (chunk === undefined) return 0;
  return typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
}

/** A response whose body is measured for `content-length` and never written. */
export function bodiless(res: HttpResponse): HttpResponse {
  let written = 0;
  // Only a bare endWithoutBody() answers in this uWS build: given a length it aborts the process, given
  // (undefined, close) it sends nothing. So the length is a plain header, and a request to close the
  // connection (made for an unread request body, which a HEAD request does not have) is not passed on.
  const finish = (last: RecognizedString | undefined): void => {
    res.writeHeader('content-length', String(written + byteLength(last))).endWithoutBody();
  };
  const proxy: HttpResponse = new Proxy(res, {
    get(target, prop) {
      switch (prop) {
        case 'end':
          return (body?: RecognizedString) => (finish(body), proxy);
        case 'tryEnd':
          return (body: RecognizedString) => (finish(body), [true, true]);
        case 'write':
          return (chunk: RecognizedString) => ((written += byteLength(chunk)), true);
        case 'endWithoutBody':
          return () => (target.endWithoutBody(), proxy);
      }
      const v = Reflect.get(target, prop) as unknown;
      if (typeof v !== 'function') return v;
      // Chained calls (writeStatus(…).writeHeader(…).end(…)) must come back to the proxy.
      return (...args: unknown[]) => {
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        return r === target ? proxy : r;
      };
    },
  });
  return proxy;
}

/** True for a HEAD request (uWS gives the method in lower case). */
export function isHead(req: HttpRequest): boolean {
  return req.getMethod() === 'head';
}

/** Registers a GET route and its HEAD twin: the same handler, the body left out. */
export function getAndHead(app: TemplatedApp, pattern: string, handler: (res: HttpResponse, req: HttpRequest) => void | Promise<void>): void {
  app.get(pattern, handler);
  app.head(pattern, (res, req) => handler(bodiless(res), req));
}

/** For a catch-all route (`app.any`): a HEAD request it answers gets the answer without the body. */
export function headSafe(handler: (res: HttpResponse, req: HttpRequest) => void | Promise<void>): (res: HttpResponse, req: HttpRequest) => void | Promise<void> {
  return (res, req) => handler(isHead(req) ? bodiless(res) : res, req);
}
