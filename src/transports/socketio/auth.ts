/**
 * Authorization of private-/presence- subscriptions for the gateway, on the connection's shard:
 * a token in the subscribe request, the connection's own token, the backend's auth endpoint
 * (laravel-echo-server's way), or — decided on the owner shard — the channel actor's `authorize`.
 */
import { channelAllowed, type JwtClaims } from '../../auth/jwt.js';
import { channelKind } from '../../auth/channels.js';
import { RtError } from '../../errors.js';
import { APP_SEPARATOR, USER_ID_SEPARATOR_RULE } from '../../runtime/app-scope.js';
import type { ChannelIdentity, Client } from '../../runtime/client.js';
import type { Handshake } from '../../actors/handlers.js';
import { signedUserId } from '../../auth/user-id.js';

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const ENDPOINT_TIMEOUT_MS = 10_000;
/**
 * Headers a client may not choose for the backend request: they describe the request itself, or where
 * it came from, which a backend trusting rt-actors as a proxy (Laravel's TrustProxies) would believe.
 */
const UNFORWARDED = new Set([
  'host', 'content-length', 'content-type', 'connection', 'transfer-encoding', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'proxy-authorization',
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-server', 'x-real-ip', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-original-forwarded-for',
]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$/;
/**
 * A character an HTTP field value cannot hold (RFC 9110: tab, printable ASCII and obs-text bytes). fetch
 * throws on one ("é" passes, "Ā" or a control character does not), which was reported as the auth
 * endpoint being unreachable: such a header is left out instead, like one with CR/LF.
 */
const NOT_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

// No length bound here: a JWT over the verifier's 8 KiB limit is still one, refused as token_malformed
// with its length (as on /ws, /sse and /poll) rather than passed on and the connection let in anonymously.
export function looksLikeJwt(s: string): boolean {
  return JWT_SHAPE.test(s);
}

/** `Bearer …` from an `auth.headers`-style object (laravel-echo's `auth` option), any header case. */
export function bearerOf(headers: unknown): string | undefined {
  if (!headers || typeof headers !== 'object') return undefined;
  for (const [k, v] of Object.entries(headers as Record<string, unknown>)) {
    if (k.toLowerCase() !== 'authorization' || typeof v !== 'string') continue;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(v);
    return m ? m[1] : undefined;
  }
  return undefined;
}

export interface TokenCheck {
  /** The shard's verifier (inline for HS256, off-thread for RS256/ES256). */
  verify(token: string): JwtClaims | Promise<JwtClaims>;
  /** Revoked through the API (POST /api/users/:id/revoke-tokens or similar). */
  isRevoked(user: string, iat: number | undefined): boolean;
}

/** Verifies a token into claims, or throws an RtError with the token_* code and status 401. */
export async function verifyToken(check: TokenCheck, token: string): Promise<JwtClaims> {
  let claims: JwtClaims;
  try {
    claims = await check.verify(token);
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string' && typeof e.message === 'string') throw new RtError(e.code, e.message, 401);
    throw err;
  }
  if (check.isRevoked(String(claims.sub), claims.iat)) throw new RtError('token_revoked', 'this token was revoked; get a new one', 401);
  return claims;
}

export interface ChannelAuthDeps {
  tokens: TokenCheck;
  /** Whether a JWT secret or public key is configured. */
  jwtConfigured: boolean;
  authEndpoint: string;
  /** Whether the channel's actor has its own `authorize` (then the actor decides). */
  actorAuthorizes(channel: string): boolean;
}

/**
 * Identity to subscribe `client` to `channel` with, or undefined to use the connection's own (the
 * owner then checks it, or the actor's authorize decides). Throws a coded RtError on refusal.
 */
export async function authorizeChannel(deps: ChannelAuthDeps, client: Client, socketId: string, handshake: Handshake, channel: string, auth: unknown): Promise<ChannelIdentity | undefined> {
  if (channelKind(channel) === 'public') return undefined;
  const a = auth && typeof auth === 'object' ? (auth as Record<string, unknown>) : {};
  const bearer = bearerOf(a.headers);
  if (bearer !== undefined && looksLikeJwt(bearer) && (deps.jwtConfigured || !deps.authEndpoint)) {
    try {
      const c = await verifyToken(deps.tokens, bearer);
      return { user: String(c.sub), info: c.user_info, grants: c.channels ?? [], issuedAt: c.iat };
    } catch (err) {
      // With an auth endpoint the bearer may be the backend's own token (e.g. Laravel Passport).
      if (!deps.authEndpoint) throw err;
    }
  }
  if (deps.actorAuthorizes(channel)) return undefined;
  if (client.user !== undefined && channelAllowed(client.grants, channel)) return undefined;
  if (deps.authEndpoint) return callAuthEndpoint(deps.authEndpoint, client, socketId, handshake, channel, a.headers);
  return undefined;
}

/**
 * Asks the backend, as laravel-echo-server did: POST channel_name (and socket_id) with the headers the
 * client gave in `auth.headers` plus the cookie of its handshake request. 2xx authorizes; for presence
 * channels the answer's `channel_data` ({ user_id, user_info }, object or JSON string) names the member.
 */
async function callAuthEndpoint(url: string, client: Client, socketId: string, handshake: Handshake, channel: string, clientHeaders: unknown): Promise<ChannelIdentity> {
  const headers: Record<string, string> = {};
  if (clientHeaders && typeof clientHeaders === 'object') {
    let n = 0;
    for (const [k, v] of Object.entries(clientHeaders as Record<string, unknown>)) {
      if (++n > 50) break;
      if (typeof v !== 'string' || !HEADER_NAME.test(k) || UNFORWARDED.has(k.toLowerCase()) || v.length > 8192 || NOT_FIELD_VALUE.test(v)) continue;
      headers[k.toLowerCase()] = v;
    }
  }
  if (handshake.headers.cookie && !headers.cookie) headers.cookie = handshake.headers.cookie;
  headers['x-requested-with'] ??= 'XMLHttpRequest';
  headers.accept ??= 'application/json';
  headers['content-type'] = 'application/x-www-form-urlencoded';
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers,
      body: new URLSearchParams({ channel_name: channel, socket_id: socketId }).toString(),
      signal: AbortSignal.timeout(ENDPOINT_TIMEOUT_MS),
      redirect: 'manual',
    });
  } catch (err) {
    throw new RtError('auth_unavailable', `auth endpoint unreachable: ${(err as Error).message}`, 503);
  }
  const text = await res.text().catch(() => '');
  if (res.status === 401 || res.status === 403) throw new RtError(res.status === 401 ? 'unauthorized' : 'forbidden', `the auth endpoint refused ${channel} (HTTP ${res.status})`, res.status);
  if (res.status < 200 || res.status > 299) throw new RtError('auth_failed', `the auth endpoint answered HTTP ${res.status} for ${channel}`, 502);
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : true;
  } catch {
    body = undefined;
  }
  let cd = body && typeof body === 'object' ? (body as { channel_data?: unknown }).channel_data : undefined;
  // Where the member's id is written: Laravel's pusher broadcaster answers channel_data as a JSON
  // string, its redis broadcaster as an object. A 64-bit integer id is read back from that text.
  let idAt: { raw: string; path: string[] } = { raw: text, path: ['channel_data', 'user_id'] };
  if (typeof cd === 'string') {
    idAt = { raw: cd, path: ['user_id'] };
    try {
      cd = JSON.parse(cd);
    } catch {
      cd = undefined;
    }
  }
  const member = cd && typeof cd === 'object' ? (cd as { user_id?: unknown; user_info?: unknown }) : undefined;
  const uid = member?.user_id;
  const user = typeof uid === 'string' || typeof uid === 'number' ? (signedUserId(uid, idAt.raw, idAt.path) ?? String(uid)) : undefined;
  if (channelKind(channel) === 'presence' && (user === undefined || user.length === 0 || user.length > 200)) {
    throw new RtError('auth_failed', `the auth endpoint authorized ${channel} without channel_data.user_id`, 502);
  }
  if (user?.includes(APP_SEPARATOR)) throw new RtError('auth_failed', `the auth endpoint's channel_data.user_id for ${channel}: ${USER_ID_SEPARATOR_RULE}`, 502);
  return { user: user ?? client.user, info: member?.user_info, granted: true, issuedAt: Math.floor(Date.now() / 1000) };
}
