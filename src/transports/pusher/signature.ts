/**
 * Pusher's HMAC-SHA256 signatures: channel authorization (`socket_id:channel[:channel_data]`), user
 * sign-in (`socket_id::user::user_data`), and HTTP API requests (method, path and sorted query signed
 * with the app secret, body bound by body_md5, timestamps within ±600 s). Comparisons take a time set by
 * the presented signature's length only, and compare characters: one of the right length in characters
 * but not in bytes once reached timingSafeEqual, whose RangeError crashed the shard.
 */
import { createHmac } from 'node:crypto';
import { sameSecret } from '../../security/same-secret.js';
import { digestOf, queryParams } from '../http.js';
import type { PusherApp } from './apps.js';

/** Pusher refuses API calls whose auth_timestamp is further than this from the server's clock. */
export const API_TIMESTAMP_WINDOW_S = 600;

export function sign(secret: string, data: string): string {
  return createHmac('sha256', secret).update(data).digest('hex');
}

/** `auth` is `<key>:<hex signature>`; true when it is this app's signature of `payload`. */
function verifyAuthString(app: PusherApp, auth: unknown, payload: string): boolean {
  if (typeof auth !== 'string' || auth.length > 300) return false;
  const i = auth.indexOf(':');
  if (i < 0 || auth.slice(0, i) !== app.key) return false;
  return sameSecret(auth.slice(i + 1), sign(app.secret, payload));
}

export function verifyChannelAuth(app: PusherApp, socketId: string, channel: string, auth: unknown, channelData?: string): boolean {
  return verifyAuthString(app, auth, channelData === undefined ? `${socketId}:${channel}` : `${socketId}:${channel}:${channelData}`);
}

export function verifyUserAuth(app: PusherApp, socketId: string, userData: string, auth: unknown): boolean {
  return verifyAuthString(app, auth, `${socketId}::user::${userData}`);
}

/**
 * A refused API call: 401 with Pusher's wording as its message, which http-api.ts answers as JSON
 * `{ "error": { "code": "unauthorized", "message" } }` like every other API error.
 */
export class ApiAuthError extends Error {
  readonly status = 401;
}

/**
 * Checks a signed HTTP API request. `query` is the raw query string; `body` the raw body (empty for
 * GET). Throws ApiAuthError with the reason; returns nothing when the request is good.
 */
export function verifyApiRequest(app: PusherApp, method: string, path: string, query: string, body: Buffer, now = Date.now()): void {
  // A malformed escape is a 400 (queryParams), as on the routes' own parameters, before any signature.
  const params = queryParams(query);
  const get = (k: string): string | undefined => params.get(k) ?? undefined;
  const key = get('auth_key');
  const ts = get('auth_timestamp');
  const version = get('auth_version');
  const signature = get('auth_signature');
  if (!key || !ts || !signature) {
    // auth_version is not among them: without it the request is read as 1.0 (the only version).
    const missing = (['auth_key', 'auth_timestamp', 'auth_signature'] as const).filter((k) => !get(k));
    throw new ApiAuthError(`Missing authentication parameters: ${missing.join(', ')} (auth_key, auth_timestamp and auth_signature are required; auth_version, if given, must be 1.0)`);
  }
  if (key !== app.key) throw new ApiAuthError('Unknown auth_key');
  if (version !== undefined && version !== '1.0') throw new ApiAuthError(`Unsupported auth_version ${JSON.stringify(version).slice(0, 20)}; use 1.0`);
  const t = Number(ts);
  const serverTime = Math.floor(now / 1000);
  if (!/^\d{1,12}$/.test(ts) || Math.abs(serverTime - t) > API_TIMESTAMP_WINDOW_S) {
    throw new ApiAuthError(`Timestamp expired: Given timestamp (${ts.slice(0, 20)}) not within ${API_TIMESTAMP_WINDOW_S}s of server time (${serverTime})`);
  }
  if (body.length > 0) {
    const md5 = digestOf('md5', body, 'hex');
    if (get('body_md5') !== md5) throw new ApiAuthError(`Invalid body_md5: the MD5 of the request body is ${md5}`);
  }
  const pairs: [string, string][] = [];
  for (const [k, v] of params) if (k !== 'auth_signature') pairs.push([k.toLowerCase(), v]);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const toSign = `${method.toUpperCase()}\n${path}\n${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`;
  if (!sameSecret(signature, sign(app.secret, toSign))) {
    throw new ApiAuthError(`Invalid signature: you should have sent HmacSHA256Hex(${JSON.stringify(toSign)}, your_secret_key), but you sent "${signature.slice(0, 80)}"`);
  }
}
