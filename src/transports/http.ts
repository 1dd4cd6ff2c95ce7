/**
 * HTTP helpers over uWS responses: bounded body reading, JSON answers and errors in the one shape the
 * API promises ({ "error": { "code", "message" } }), and abort tracking (uWS forbids touching an aborted
 * response).
 */
import crypto from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { HttpRequest, HttpResponse, us_socket_context_t, WebSocket as UwsSocket, WebSocketBehavior } from 'uWebSockets.js';
import { RtError, toErrorBody } from '../errors.js';
import { countRefusal } from '../runtime/instruments.js';
import { clientAddress, forwardingHeader } from '../security/client-ip.js';
import { threadLogger, logInternal } from '../log.js';
import { jsonNestsDeeper, MAX_JSON_DEPTH } from '../protocol/json-depth.js';

/**
 * A digest of `data` in one call. crypto.hash (Node ≥ 20.12) is one call; a Hash object per request cost
 * ~11 µs of each API call (measured in a CPU profile of `POST /api/publish`). Older Node 20 has only
 * createHash.
 */
export function digestOf(algorithm: 'sha256' | 'md5', data: string | Buffer): Buffer;
export function digestOf(algorithm: 'sha256' | 'md5', data: string | Buffer, encoding: 'hex'): string;
export function digestOf(algorithm: 'sha256' | 'md5', data: string | Buffer, encoding?: 'hex'): Buffer | string {
  if (typeof crypto.hash === 'function') return crypto.hash(algorithm, data, encoding ?? 'buffer');
  const h = crypto.createHash(algorithm).update(data);
  return encoding ? h.digest(encoding) : h.digest();
}

/**
 * The request headers a snapshot keeps: the ones handlers read. One C++ call each; copying every header
 * (req.forEach) calls back into JavaScript once per header the client sent, and was 7 % of the CPU of
 * `POST /api/publish` (a `fetch` sends ten). A handler that needs another header adds it here.
 */
export const SNAPSHOT_HEADERS = ['authorization', 'origin', 'host', 'content-length', 'last-event-id', 'x-forwarded-for', 'x-real-ip'] as const;
export type SnapshotHeader = (typeof SNAPSHOT_HEADERS)[number];
/** The names as bytes: uWS.js converts a string argument to UTF-8 at every call (see statusLineBytes). */
const SNAPSHOT_KEYS = SNAPSHOT_HEADERS.map((h) => [h, Buffer.from(h)] as const);

export interface Req {
  method: string;
  url: string;
  query: string;
  /** The SNAPSHOT_HEADERS the request has, non-empty. */
  headers: Partial<Record<SnapshotHeader, string>>;
  params: string[];
}

/**
 * A path parameter, percent-decoded. `%ZZ` or a cut-off UTF-8 sequence is a 400 naming it: the URIError
 * decodeURIComponent throws would otherwise escape a uWS handler, which takes the thread down.
 */
export function pathParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new RtError('bad_request', `malformed percent-escape in the path: ${raw.slice(0, 64)}`, 400);
  }
}

/** uWS request objects die at the first await: copy what handlers need up front. Throws a 400 RtError for a path parameter that does not decode. */
export function snapshot(res: HttpResponse, req: HttpRequest, paramCount = 0): Req {
  const headers: Partial<Record<SnapshotHeader, string>> = {};
  for (const [h, key] of SNAPSHOT_KEYS) {
    const v = h === 'x-forwarded-for' || h === 'x-real-ip' ? forwardingHeader(req, h) : req.getHeader(key);
    if (v) headers[h] = v;
  }
  const params: string[] = [];
  for (let i = 0; i < paramCount; i++) params.push(pathParam(req.getParameter(i) ?? ''));
  return {
    method: req.getMethod(),
    url: req.getUrl(),
    query: req.getQuery() ?? '',
    headers,
    params,
  };
}

/**
 * The client's address (behind --trust-proxy, the one the proxy saw). Call it before the first await,
 * like snapshot(). Only the routes that open a session need it: uWS copies the peer address into a new
 * ArrayBuffer for each call, 3 % of the CPU of an API request that never used it.
 */
export function requestIp(res: HttpResponse, r: Req): string {
  return clientAddress(res.getRemoteAddressAsText(), (h) => r.headers[h]);
}

// Node's table: a hand-kept one lacked 426 and 502, which went out as "426 Status".
export function statusLine(code: number): string {
  return `${code} ${STATUS_CODES[code] ?? 'Status'}`;
}

/**
 * statusLine as bytes, kept per status. Every API answer writes a status line and a content type;
 * strings cost uWS.js a UTF-8 conversion each (v8::String::Utf8Value was 3 % of a shard's user time in
 * the 2-shard fan-out profile of 2026-11-27, with the topic strings and the header names).
 */
const statusBytes = new Map<number, Buffer>();
function statusLineBytes(code: number): Buffer {
  let b = statusBytes.get(code);
  if (!b) statusBytes.set(code, (b = Buffer.from(statusLine(code))));
  return b;
}
const CONTENT_TYPE = Buffer.from('content-type');
const APPLICATION_JSON = Buffer.from('application/json');

/**
 * A response's state: `aborted` once the client went away (or it was answered). uWS keeps one
 * onAborted handler per response, so a body still being read hangs its own reaction on `onAbort`.
 */
export interface ResponseState {
  aborted: boolean;
  onAbort?: () => void;
}

/** Marks a response aborted so late async answers are skipped instead of crashing uWS. */
export function track(res: HttpResponse): ResponseState {
  const state: ResponseState = { aborted: false };
  res.onAborted(() => {
    state.aborted = true;
    state.onAbort?.();
  });
  return state;
}

/**
 * Counts a request as in flight until the returned function is called. Shutdown waits for in-flight
 * requests until --shutdown-timeout; one still running then is answered 503 here rather than having
 * its connection closed under it, so the caller knows it may not have taken effect.
 */
export function beginRequest(inflight: Set<() => void>, res: HttpResponse, state: { aborted: boolean }, headers?: () => Record<string, string>): () => void {
  const cutOff = () => {
    const err = new RtError('unavailable', 'server shut down before this request finished (--shutdown-timeout): it may not have taken effect', 503);
    sendError(res, state, err, headers?.());
  };
  inflight.add(cutOff);
  return () => inflight.delete(cutOff);
}

/** A body already serialised as JSON text, which sendJson sends as it is. */
export class JsonText {
  constructor(readonly text: string) {}
}

export function sendJson(res: HttpResponse, state: { aborted: boolean }, status: number, body: unknown, extraHeaders?: Record<string, string>): void {
  if (state.aborted) return;
  state.aborted = true;
  res.cork(() => {
    res.writeStatus(statusLineBytes(status)).writeHeader(CONTENT_TYPE, APPLICATION_JSON);
    if (extraHeaders) for (const [k, v] of Object.entries(extraHeaders)) res.writeHeader(k, v);
    // A 413 may leave unread body bytes behind: close rather than parse them as the next request.
    res.end(body instanceof JsonText ? body.text : JSON.stringify(body), status === 413);
  });
}

/** The HTTP status an error answers with. */
export function errorStatus(err: unknown): number {
  return err instanceof RtError ? err.status : typeof (err as { status?: unknown })?.status === 'number' ? (err as { status: number }).status : 500;
}

export function sendError(res: HttpResponse, state: { aborted: boolean }, err: unknown, extraHeaders?: Record<string, string>): void {
  countRefusal(err);
  logInternal(err, 'an HTTP request');
  sendJson(res, state, errorStatus(err), { error: toErrorBody(err) }, extraHeaders);
}

/**
 * Reads the whole body, refusing more than `limit` bytes with 413 as soon as the declared length or
 * the received bytes pass it (the connection is closed so the rest is never buffered). `as: 'text'`
 * gives it decoded as UTF-8: a body in one chunk (most are) is then decoded straight from uWS's buffer,
 * without the copy a Buffer needs.
 */
export function readBody(res: HttpResponse, declared: string | undefined, limit: number, state: { aborted: boolean }): Promise<Buffer>;
export function readBody(res: HttpResponse, declared: string | undefined, limit: number, state: { aborted: boolean }, as: 'text'): Promise<string>;
export function readBody(res: HttpResponse, declared: string | undefined, limit: number, state: { aborted: boolean }, as?: 'text'): Promise<Buffer | string> {
  return new Promise((resolve, reject) => {
    if (declared !== undefined && (!/^\d+$/.test(declared) || Number(declared) > limit)) {
      reject(new RtError('payload_too_large', `body larger than the ${limit}-byte limit`, 413));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    // A client gone mid-body never sends the rest: without this the request stayed in flight for good
    // (shutdown waited --shutdown-timeout for it) and kept its handler and chunks.
    (state as ResponseState).onAbort = () => {
      if (done) return;
      done = true;
      reject(new RtError('bad_request', 'the client went away before sending the whole body', 400));
    };
    res.onData((ab, isLast) => {
      if (done) return;
      size += ab.byteLength;
      if (size > limit) {
        done = true;
        reject(new RtError('payload_too_large', `body larger than the ${limit}-byte limit`, 413));
        return;
      }
      if (isLast && chunks.length === 0 && as === 'text') {
        // Most bodies come in one chunk: decoded before uWS reuses the ArrayBuffer, nothing copied twice.
        done = true;
        if (!state.aborted) resolve(Buffer.from(ab).toString('utf8'));
        return;
      }
      // uWS reuses the ArrayBuffer after this callback: copy (once: Buffer.from of an ArrayBuffer shares it).
      const chunk = Buffer.from(ab.slice(0));
      if (isLast) {
        done = true;
        // One chunk: no list, no concatenation.
        const body = chunks.length === 0 ? chunk : Buffer.concat([...chunks, chunk], size);
        if (!state.aborted) resolve(as === 'text' ? body.toString('utf8') : body);
        return;
      }
      chunks.push(chunk);
    });
  });
}

export function parseJsonBody(body: Buffer | string): unknown {
  if (body.length === 0) throw new RtError('bad_json', 'request body is empty; expected JSON');
  const text = typeof body === 'string' ? body : body.toString('utf8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new RtError('bad_json', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (jsonNestsDeeper(text)) throw new RtError('bad_request', `request body nests deeper than ${MAX_JSON_DEPTH} levels of arrays and objects`);
  return v;
}

/**
 * A request's query parameters, percent-decoded. URLSearchParams reads `%ZZ` as those three characters
 * and a cut-off UTF-8 sequence as U+FFFD, so a value the client did not mean was used as sent
 * (`?prefix=%ZZ` listed no channels, where the same escape in the path is a 400): a malformed escape in
 * any parameter is a 400 naming it, as pathParam does. Checked only when the query has a `%` at all.
 */
export function queryParams(query: string): URLSearchParams {
  if (query.includes('%')) {
    for (const pair of query.split('&')) {
      if (!pair.includes('%')) continue;
      try {
        decodeURIComponent(pair);
      } catch {
        const eq = pair.indexOf('=');
        const name = new URLSearchParams(`${eq === -1 ? pair : pair.slice(0, eq)}=`).keys().next().value ?? '';
        throw new RtError('bad_request', `malformed percent-escape in query parameter ${JSON.stringify(name.slice(0, 64))}`, 400);
      }
    }
  }
  return new URLSearchParams(query);
}

export function queryParam(query: string, name: string): string | undefined {
  return queryParams(query).get(name) ?? undefined;
}

/**
 * The connection token of a request opening a connection: `?token=`, else `Authorization: Bearer`. The
 * scheme is case-insensitive (RFC 7235) and an empty `?token=` counts as none, on every transport alike.
 */
export function requestToken(query: string, authorization: string): string | undefined {
  const q = queryParam(query, 'token');
  if (q) return q;
  return /^Bearer\s+/i.test(authorization) ? authorization.replace(/^Bearer\s+/i, '').trim() || undefined : undefined;
}

/**
 * A WebSocket behavior whose handlers cannot take the process or the shard down. uWS aborts the whole
 * process (a C++ terminate, every shard with it) when JavaScript throws out of an upgrade handler: a
 * throw before the upgrade is answered with its status (a bug's 500 is logged); after it, or on an
 * aborted request, there is nobody left to answer. A throw out of a message handler would end the
 * shard with every connection on it: it is logged and ends that one socket (1011), whose state the
 * handler may have left half-changed.
 */
export function guardBehavior<T>(behavior: WebSocketBehavior<T>): WebSocketBehavior<T> {
  const { upgrade, message } = behavior;
  const guarded: WebSocketBehavior<T> = { ...behavior };
  if (upgrade) {
    guarded.upgrade = function (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
      try {
        upgrade.call(this, res, req, context);
      } catch (err) {
        if (!(err instanceof RtError)) threadLogger().error('WebSocket upgrade handler failed', err);
        try {
          const status = errorStatus(err);
          res.cork(() => res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: toErrorBody(err) }), true));
        } catch {
          /* already upgraded, answered or aborted */
        }
      }
    };
  }
  if (message) {
    guarded.message = function (ws: UwsSocket<T>, msg: ArrayBuffer, isBinary: boolean) {
      try {
        return message.call(this, ws, msg, isBinary);
      } catch (err) {
        threadLogger().error('WebSocket message handler failed; the socket is closed', err, { event: 'ws.handler_error' });
        try {
          ws.end(1011, 'internal error');
        } catch {
          /* already closed by the handler */
        }
      }
    };
  }
  return guarded;
}
