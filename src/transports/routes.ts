/**
 * Which methods each path answers, recorded as the transports register their routes (RFC 9110 §15.5.6:
 * a known path asked with another method is 405 with an Allow header listing the ones it answers; a
 * path no route serves is 404). One table for every transport, filled by the registrations themselves,
 * so the Allow header cannot disagree with the routes, and a transport that is off adds nothing.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { RtError } from '../errors.js';
import { MethodNotAllowed } from './http-api.js';

/** The order the Allow header lists methods in. */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** uWS's registration methods, and the HTTP method each one serves. */
const REGISTRATIONS: Record<string, readonly string[]> = {
  get: ['GET'],
  head: ['HEAD'],
  post: ['POST'],
  put: ['PUT'],
  patch: ['PATCH'],
  del: ['DELETE'],
  options: ['OPTIONS'],
  any: METHODS,
  // A WebSocket route answers a GET with an upgrade; the plain GET reaches the catch-all (see refusal()).
  ws: ['GET'],
};

type Route = { re: RegExp; wildcard: boolean; websocket: boolean; methods: Set<string> };

export class RouteTable {
  private readonly routes = new Map<string, Route>();

  add(pattern: string, methods: readonly string[], websocket = false): void {
    let r = this.routes.get(pattern);
    if (!r) {
      const wildcard = pattern.endsWith('*');
      const body = pattern
        .replace(/\*$/, '')
        .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
        .replace(/:[^/]+/g, '[^/]+');
      r = { re: new RegExp('^' + body + (wildcard ? '' : '$')), wildcard, websocket: false, methods: new Set() };
      this.routes.set(pattern, r);
    }
    r.websocket ||= websocket;
    for (const m of methods) r.methods.add(m);
  }

  /**
   * Why a request that reached the catch-all is refused: 405 for a known path (Allow: the methods its
   * routes answer), 426 for a plain GET of a WebSocket route, undefined for a path no route serves.
   * A wildcard route (the API's `OPTIONS /api/*`) adds its methods to a known path but makes no path known.
   */
  refusal(method: string, path: string): RtError | undefined {
    const methods = new Set<string>();
    let known = false;
    let websocket = false;
    for (const r of this.routes.values()) {
      if (!r.wildcard && r.re.test(path)) {
        known = true;
        websocket ||= r.websocket;
        for (const m of r.methods) methods.add(m);
      }
    }
    if (!known) return undefined;
    for (const r of this.routes.values()) if (r.wildcard && r.re.test(path)) for (const m of r.methods) methods.add(m);
    const upper = method.toUpperCase();
    if (websocket && upper === 'GET') {
      return new RtError('upgrade_required', `GET ${path} is a WebSocket endpoint: connect with a WebSocket client`, 426);
    }
    return new MethodNotAllowed(upper, path, METHODS.filter((m) => methods.has(m)).join(', '));
  }
}

/**
 * The app as the transports see it: every route they register is also written in `routes`. The shard's
 * catch-all, registered on the app itself, answers from that table.
 */
export function recordRoutes(app: TemplatedApp, routes: RouteTable): TemplatedApp {
  const proxy: TemplatedApp = new Proxy(app, {
    get(target, prop) {
      const v = Reflect.get(target, prop) as unknown;
      if (typeof v !== 'function') return v;
      const methods = typeof prop === 'string' ? REGISTRATIONS[prop] : undefined;
      return (...args: unknown[]) => {
        if (methods && typeof args[0] === 'string') routes.add(args[0], methods, prop === 'ws');
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        // Chained registrations (app.get(…).post(…)) must come back to the proxy.
        return r === target ? proxy : r;
      };
    },
  });
  return proxy;
}
