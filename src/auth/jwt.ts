/**
 * Connection tokens: verification with jose (HS256 with a secret, RS256/ES256 with a PEM public key or
 * a JWKS URL whose keys are fetched, cached and rotated by `kid`), after cheap structure checks that
 * bound the work done on hostile input and give precise errors; the claims rt-actors reads (`sub`,
 * `user_info`, `channels`) are then type-checked. signJwt mints HS256/RS256/ES256 tokens (CLI, tests).
 */
import { createHmac, createPrivateKey, createPublicKey, createSecretKey, sign as cryptoSign, timingSafeEqual, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type FlattenedJWSInput, type JWSHeaderParameters, type KeyInput } from 'jose';
import { APP_SEPARATOR, USER_ID_SEPARATOR_RULE } from '../runtime/app-scope.js';
import { signedUserId } from './user-id.js';
import { threadLogger, urlForLog } from '../log.js';

/**
 * What a client is told when the key set cannot be fetched. The --jwks-url is not quoted: its query or
 * user:password@ may hold a secret. The log names it, without them (urlForLog), with the fetch's error.
 */
const JWKS_UNAVAILABLE = "the identity provider's JWKS (--jwks-url) could not be fetched; the server's log says why";

export type JwtAlgorithm = 'HS256' | 'RS256' | 'ES256';

export interface JwtClaims {
  sub: string;
  user_info?: unknown;
  channels?: string[];
  exp?: number;
  nbf?: number;
  iat?: number;
  [claim: string]: unknown;
}

export type JwtErrorCode =
  | 'token_malformed'
  | 'token_bad_signature'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'token_alg_not_allowed'
  | 'token_invalid_claims'
  | 'token_not_configured'
  | 'token_wrong_audience'
  | 'token_wrong_issuer'
  | 'token_unknown_key'
  | 'token_keys_unavailable';

export class JwtError extends Error {
  readonly code: JwtErrorCode;
  constructor(code: JwtErrorCode, message: string) {
    super(message);
    this.name = 'JwtError';
    this.code = code;
  }
}

export interface JwksOptions {
  /** Least time between two fetches caused by an unknown kid (jose's cooldownDuration). Default 30 s. */
  cooldownMs?: number;
  /** Keys older than this are re-fetched before use. Default 10 min. */
  cacheMaxAgeMs?: number;
  /** A JWKS fetch taking longer fails. Default 5 s. */
  timeoutMs?: number;
}

export interface JwtVerifierOptions {
  /** HS256 shared secret. */
  secret?: string;
  /** PEM text (RSA → RS256, EC P-256 → ES256). Not a path: the config layer reads files. */
  publicKey?: string;
  /** JSON Web Key Set URL of an identity provider (RS256/ES256 keys picked by the token's kid). */
  jwksUrl?: string;
  jwks?: JwksOptions;
  /** Accepted `aud` values; when set, a token must carry one of them. */
  audience?: readonly string[];
  /** Accepted `iss` values; when set, a token must carry one of them. */
  issuer?: readonly string[];
  /** Default 30. */
  clockSkewSeconds?: number;
  /** Current time in seconds; default Date.now()/1000. */
  now?: () => number;
}

export interface JwtVerifier {
  /** Resolves with the token's claims; rejects with a JwtError. */
  verify(token: string): Promise<JwtClaims>;
  /**
   * Verifies on the spot when no key has to be fetched or public-key math done: an HS256 token (one
   * HMAC, about a microsecond) or any token that fails its structure checks. Returns the claims, throws
   * a JwtError, or returns undefined when only `verify` can decide (RS256/ES256).
   */
  verifyNow(token: string): JwtClaims | undefined;
  readonly algorithms: JwtAlgorithm[];
}

// Tokens travel in headers and query strings; anything larger is abuse, and capping it
// bounds the work done before the signature has been checked.
const MAX_TOKEN_LENGTH = 8 * 1024;
const DEFAULT_CLOCK_SKEW_SECONDS = 30;
const BASE64URL_CHARS = /^[A-Za-z0-9_-]*$/;
// fatal: a token whose JSON is not valid UTF-8 was not produced by an honest signer.
const utf8 = new TextDecoder('utf-8', { fatal: true });

function malformed(message: string): JwtError {
  return new JwtError('token_malformed', message);
}

function base64urlEncode(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

// Buffer.from(…, 'base64url') silently skips invalid characters and accepts padding, so two
// different strings could decode to the same bytes; insisting on the canonical form keeps the
// signed text and the decoded content in one-to-one correspondence.
function base64urlDecode(part: string, what: string): Buffer {
  if (!BASE64URL_CHARS.test(part)) {
    throw malformed(`token ${what} is not base64url (only A-Z a-z 0-9 - _ without padding are allowed)`);
  }
  if (part.length % 4 === 1) {
    throw malformed(`token ${what} has an impossible base64url length`);
  }
  const bytes = Buffer.from(part, 'base64url');
  if (bytes.toString('base64url') !== part) {
    throw malformed(`token ${what} is not canonical base64url`);
  }
  return bytes;
}

function decodeJsonObject(part: string, what: string): Record<string, unknown> {
  const bytes = base64urlDecode(part, what);
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch {
    throw malformed(`token ${what} is not valid JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw malformed(`token ${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function describeTime(seconds: number): string {
  const ms = seconds * 1000;
  // Date only covers ±8.64e15 ms; a hostile claim must still produce a message, not a RangeError.
  if (Math.abs(ms) <= 8.64e15) return new Date(ms).toISOString();
  return `${seconds} (seconds since 1970)`;
}

function describeKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

interface AsymmetricKey {
  algorithm: 'RS256' | 'ES256';
  key: KeyObject;
}

function classifyKey(key: KeyObject, role: string): 'RS256' | 'ES256' {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    throw new Error(`JWT ${role} is an EC key on curve ${curve ?? 'unknown'}; only P-256 (ES256) is supported`);
  }
  throw new Error(
    `JWT ${role} is a ${key.asymmetricKeyType ?? 'unknown'} key; only RSA (RS256) and EC P-256 (ES256) are supported`,
  );
}

function loadPublicKey(pem: string): AsymmetricKey {
  if (!pem.includes('-----BEGIN')) {
    throw new Error('JWT public key must be PEM text (-----BEGIN PUBLIC KEY-----…); a file path is not accepted here');
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new Error(`JWT public key could not be parsed as PEM: ${(err as Error).message}`);
  }
  return { algorithm: classifyKey(key, 'public key'), key };
}

function hmacSha256(secret: string, input: string): Buffer {
  return createHmac('sha256', secret).update(input, 'ascii').digest();
}

function requireFiniteNumber(claims: Record<string, unknown>, name: string): void {
  const value = claims[name];
  if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
    throw new JwtError('token_invalid_claims', `claim "${name}" must be a number of seconds, got ${describeKind(value)}`);
  }
}

/** `payloadPart`: the token's payload as sent, where a numeric `sub` is read back with all its digits. */
function validateClaims(claims: Record<string, unknown>, payloadPart: string): JwtClaims {
  const sub = claims.sub;
  if (sub === undefined) {
    throw new JwtError('token_invalid_claims', 'claim "sub" (user id) is missing');
  }
  if (typeof sub === 'string') {
    if (sub.length === 0) throw new JwtError('token_invalid_claims', 'claim "sub" (user id) is empty');
  } else if (typeof sub === 'number' && Number.isFinite(sub)) {
    // A 64-bit id (a Laravel bigint key signed as a JSON integer) was rounded by JSON.parse: two users
    // would share one id. Its digits are read back from the payload's text.
    claims.sub = (Number.isSafeInteger(sub) ? undefined : signedUserId(sub, utf8.decode(Buffer.from(payloadPart, 'base64url')), ['sub'])) ?? String(sub);
  } else {
    throw new JwtError('token_invalid_claims', `claim "sub" (user id) must be a string or a number, got ${describeKind(sub)}`);
  }
  if ((claims.sub as string).includes(APP_SEPARATOR)) throw new JwtError('token_invalid_claims', `claim "sub" (user id): ${USER_ID_SEPARATOR_RULE}`);

  const channels = claims.channels;
  if (channels !== undefined) {
    if (!Array.isArray(channels)) {
      throw new JwtError('token_invalid_claims', `claim "channels" must be an array of channel names, got ${describeKind(channels)}`);
    }
    const bad = channels.findIndex((c) => typeof c !== 'string');
    if (bad !== -1) {
      throw new JwtError('token_invalid_claims', `claim "channels" entry ${bad} must be a string, got ${describeKind(channels[bad])}`);
    }
  }

  requireFiniteNumber(claims, 'exp');
  requireFiniteNumber(claims, 'nbf');
  requireFiniteNumber(claims, 'iat');
  return claims as JwtClaims;
}

/** Least time between two fetches of a key set while its provider fails (capped by --jwks-cooldown). */
export const JWKS_RETRY_AFTER_FAILURE_MS = 5_000;

export function createJwtVerifier(opts: JwtVerifierOptions): JwtVerifier {
  // An empty secret would let anyone forge tokens (HMAC with an empty key), so it counts as unset.
  const secret = opts.secret !== undefined && opts.secret !== '' ? createSecretKey(Buffer.from(opts.secret, 'utf8')) : undefined;
  const asymmetric = opts.publicKey !== undefined && opts.publicKey !== '' ? loadPublicKey(opts.publicKey) : undefined;
  const jwks = opts.jwksUrl ? remoteKeySet(opts.jwksUrl, opts.jwks) : undefined;
  const skew = opts.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
  if (!Number.isFinite(skew) || skew < 0) {
    throw new Error(`JWT clock skew must be a non-negative number of seconds, got ${String(opts.clockSkewSeconds)}`);
  }
  const now = opts.now ?? (() => Date.now() / 1000);
  const audience = opts.audience?.length ? [...opts.audience] : undefined;
  const issuer = opts.issuer?.length ? [...opts.issuer] : undefined;

  // The accepted algorithms follow from the configured keys alone; the token's header only
  // selects among them. Trusting the header to pick the algorithm is what enables HS/RS confusion.
  const algorithms: JwtAlgorithm[] = [];
  if (secret !== undefined) algorithms.push('HS256');
  if (asymmetric !== undefined) algorithms.push(asymmetric.algorithm);
  if (jwks !== undefined) for (const a of ['RS256', 'ES256'] as const) if (!algorithms.includes(a)) algorithms.push(a);
  const exposedAlgorithms = Object.freeze([...algorithms]) as JwtAlgorithm[];

  // jose's cooldown starts only after a fetch that worked: while the provider fails, each token would
  // ask it again. After a failed fetch the key set is not asked for a while (at most the cooldown).
  const retryAfterFailureMs = Math.min(opts.jwks?.cooldownMs ?? 30_000, JWKS_RETRY_AFTER_FAILURE_MS);
  let failed: { until: number; message: string } | undefined;

  // jose checks the signature against the key, and the key's type against the header's alg.
  const keyFor = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<KeyInput> => {
    if (!jwks) return asymmetric!.key;
    if (failed && Date.now() < failed.until) {
      throw new JwtError('token_keys_unavailable', `${JWKS_UNAVAILABLE} (asked again in ${Math.ceil((failed.until - Date.now()) / 1000)} s)`);
    }
    try {
      const key = await jwks(header, token);
      failed = undefined;
      return key;
    } catch (err) {
      // jose reports a key set answered with a non-200 status, or with text that is not JSON, as a
      // plain JOSEError, which would otherwise read as a bad signature: the client was told to drop a
      // good token while the provider was failing.
      if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) throw err;
      const message = (err as Error).message;
      if (retryAfterFailureMs > 0) failed = { until: Date.now() + retryAfterFailureMs, message };
      // The URL and the fetch's own error go to the log only (see JWKS_UNAVAILABLE).
      threadLogger().warn(`the JWKS at ${urlForLog(opts.jwksUrl!)} could not be fetched: ${message}`, { event: 'jwks.unavailable' });
      throw new JwtError('token_keys_unavailable', JWKS_UNAVAILABLE);
    }
  };

  /** Structure checks done before any crypto: bounded work, and precise messages for broken tokens. */
  function precheck(token: string): { alg: string; parts: [string, string, string] } {
    if (algorithms.length === 0) {
      throw new JwtError('token_not_configured', 'JWT authentication is not configured on this server (no secret, public key or JWKS URL)');
    }
    if (typeof token !== 'string' || token.length === 0) throw malformed('token is empty');
    if (token.length > MAX_TOKEN_LENGTH) throw malformed(`token is ${token.length} characters long; the limit is ${MAX_TOKEN_LENGTH}`);
    const parts = token.split('.');
    if (parts.length !== 3) throw malformed(`token must have 3 dot-separated parts (header.payload.signature), found ${parts.length}`);
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
    const header = decodeJsonObject(headerPart, 'header');
    const alg = header.alg;
    if (typeof alg !== 'string') throw malformed('token header has no "alg" string');
    if (alg.toLowerCase() === 'none') throw new JwtError('token_alg_not_allowed', 'unsigned tokens (alg "none") are never accepted');
    if (!(algorithms as string[]).includes(alg)) {
      throw new JwtError('token_alg_not_allowed', `token is signed with ${alg}, but this server only accepts ${algorithms.join(', ')}`);
    }
    // RFC 7515 §4.1.11: extensions marked critical that we do not implement must cause rejection.
    if (header.crit !== undefined) throw malformed('token header lists critical extensions ("crit"), which are not supported');
    base64urlDecode(signaturePart, 'signature');
    base64urlDecode(payloadPart, 'payload');
    return { alg, parts: [headerPart, payloadPart, signaturePart] };
  }

  /**
   * HS256 checked here rather than by jose: jose's verification is always asynchronous (WebCrypto), and
   * a WebSocket upgrade completed after an await can be closed by uWS right after it opens (uWS
   * v20.51's cork() misreads the reallocated socket; upstream uWebSockets PR #1929). The checks and
   * messages are jose's: signature, then iss, aud, nbf, exp with the clock skew.
   */
  function verifyHs256(parts: [string, string, string]): JwtClaims {
    const [headerPart, payloadPart, signaturePart] = parts;
    const expected = createHmac('sha256', secret!).update(`${headerPart}.${payloadPart}`, 'ascii').digest();
    const actual = Buffer.from(signaturePart, 'base64url');
    if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
      throw new JwtError('token_bad_signature', 'token signature does not match (HS256)');
    }
    const claims = decodeJsonObject(payloadPart, 'payload');
    if (issuer && !(typeof claims.iss === 'string' && issuer.includes(claims.iss))) {
      throw new JwtError('token_wrong_issuer', `token issuer ${JSON.stringify(claims.iss ?? null)} is not one this server accepts (--jwt-issuer)`);
    }
    if (audience) {
      const aud = claims.aud;
      const ok = typeof aud === 'string' ? audience.includes(aud) : Array.isArray(aud) && aud.some((a) => typeof a === 'string' && audience.includes(a));
      if (!ok) throw new JwtError('token_wrong_audience', `token audience ${JSON.stringify(aud ?? null)} is not one this server accepts (--jwt-audience)`);
    }
    requireFiniteNumber(claims, 'iat');
    requireFiniteNumber(claims, 'nbf');
    requireFiniteNumber(claims, 'exp');
    const t = Math.floor(now());
    if (claims.nbf !== undefined && (claims.nbf as number) > t + skew) {
      throw new JwtError('token_not_yet_valid', `token is not valid before ${describeTime(claims.nbf as number)}`);
    }
    if (claims.exp !== undefined && (claims.exp as number) <= t - skew) {
      throw new JwtError('token_expired', `token expired at ${describeTime(claims.exp as number)}`);
    }
    return validateClaims(claims, payloadPart);
  }

  function verifyNow(token: string): JwtClaims | undefined {
    const { alg, parts } = precheck(token);
    return alg === 'HS256' ? verifyHs256(parts) : undefined;
  }

  async function verify(token: string): Promise<JwtClaims> {
    const at = verifyNow(token);
    if (at !== undefined) return at;
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, keyFor, {
        algorithms,
        audience,
        issuer,
        clockTolerance: skew,
        currentDate: new Date(now() * 1000),
      }));
    } catch (err) {
      throw joseError(err, token, opts.jwksUrl);
    }
    return validateClaims(payload, token.split('.')[1] ?? '');
  }

  return { verify, verifyNow, algorithms: exposedAlgorithms };
}

function joseError(err: unknown, token: string, jwksUrl: string | undefined): JwtError {
  if (err instanceof JwtError) return err;
  const claims = (err as { payload?: Record<string, unknown> }).payload ?? {};
  if (err instanceof joseErrors.JWTExpired) return new JwtError('token_expired', `token expired at ${describeTime(Number(claims.exp))}`);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const { claim, reason } = err;
    if (reason === 'invalid') return new JwtError('token_invalid_claims', `claim "${claim}" must be a number of seconds, got ${describeKind(claims[claim])}`);
    if (claim === 'nbf') return new JwtError('token_not_yet_valid', `token is not valid before ${describeTime(Number(claims.nbf))}`);
    if (claim === 'aud') return new JwtError('token_wrong_audience', `token audience ${JSON.stringify(claims.aud ?? null)} is not one this server accepts (--jwt-audience)`);
    if (claim === 'iss') return new JwtError('token_wrong_issuer', `token issuer ${JSON.stringify(claims.iss ?? null)} is not one this server accepts (--jwt-issuer)`);
    return new JwtError('token_invalid_claims', `claim "${claim}" is invalid`);
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new JwtError('token_bad_signature', `token signature does not match (${headerAlg(token)})`);
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) {
    return new JwtError('token_unknown_key', `no key in the identity provider's JWKS (--jwks-url) matches the token's kid ${JSON.stringify(headerKid(token) ?? null)}`);
  }
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return new JwtError('token_unknown_key', 'the token has no kid and the JWKS holds several keys for its algorithm');
  }
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || (jwksUrl && !(err instanceof joseErrors.JOSEError))) {
    threadLogger().warn(`the JWKS at ${urlForLog(jwksUrl ?? '')} could not be fetched: ${(err as Error).message}`, { event: 'jwks.unavailable' });
    return new JwtError('token_keys_unavailable', JWKS_UNAVAILABLE);
  }
  if (err instanceof joseErrors.JWTInvalid) {
    return malformed((err as Error).cause ? 'token payload is not valid JSON' : 'token payload must be a JSON object');
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) {
    return new JwtError('token_alg_not_allowed', (err as Error).message);
  }
  return new JwtError('token_bad_signature', `token could not be verified: ${(err as Error).message}`);
}

function headerField(token: string, name: string): unknown {
  try {
    return (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>)[name];
  } catch {
    return undefined;
  }
}
const headerAlg = (token: string) => String(headerField(token, 'alg'));
const headerKid = (token: string) => headerField(token, 'kid') as string | undefined;

function remoteKeySet(url: string, o: JwksOptions = {}): ReturnType<typeof createRemoteJWKSet> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`JWKS URL ${JSON.stringify(url)} is not a URL`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error(`JWKS URL must be http(s), not ${parsed.protocol}`);
  // fetch refuses a URL with credentials: every token was refused with token_keys_unavailable, whose
  // message, sent to the client, quoted the URL and its password.
  if (parsed.username || parsed.password) throw new Error('JWKS URL must not hold a user name or password (user:password@): key sets are public');
  return createRemoteJWKSet(parsed, {
    cooldownDuration: o.cooldownMs ?? 30_000,
    cacheMaxAge: o.cacheMaxAgeMs ?? 600_000,
    timeoutDuration: o.timeoutMs ?? 5_000,
  });
}

/** The verifier options a server configuration asks for. */
export function verifierOptions(c: {
  jwtSecret: string;
  jwtPublicKey: string;
  jwksUrl: string;
  jwtAudience: string[];
  jwtIssuer: string[];
  jwksCooldown: number;
  tokenGrace?: number;
}): JwtVerifierOptions {
  return {
    // A token past its exp by more than --token-grace would be closed with 4010 right after connecting,
    // and the client would come back with it in a loop while the clock skew still accepted it.
    ...(c.tokenGrace !== undefined ? { clockSkewSeconds: Math.min(DEFAULT_CLOCK_SKEW_SECONDS, c.tokenGrace) } : {}),
    secret: c.jwtSecret || undefined,
    publicKey: c.jwtPublicKey || undefined,
    jwksUrl: c.jwksUrl || undefined,
    audience: c.jwtAudience,
    issuer: c.jwtIssuer,
    jwks: { cooldownMs: c.jwksCooldown * 1000 },
  };
}

export function signJwt(
  claims: Record<string, unknown>,
  key: { secret: string } | { privateKey: string; algorithm: 'RS256' | 'ES256' },
): string {
  const alg: JwtAlgorithm = 'secret' in key ? 'HS256' : key.algorithm;
  const head = base64urlEncode(JSON.stringify({ alg, typ: 'JWT' }));
  const body = base64urlEncode(JSON.stringify(claims));
  const signingInput = `${head}.${body}`;

  let signature: Buffer;
  if ('secret' in key) {
    if (typeof key.secret !== 'string' || key.secret === '') {
      throw new Error('JWT secret must be a non-empty string');
    }
    signature = hmacSha256(key.secret, signingInput);
  } else {
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(key.privateKey);
    } catch (err) {
      throw new Error(`JWT private key could not be parsed as PEM: ${(err as Error).message}`);
    }
    const actual = classifyKey(privateKey, 'private key');
    if (actual !== key.algorithm) {
      throw new Error(`JWT private key is suited to ${actual}, not ${key.algorithm}`);
    }
    const data = Buffer.from(signingInput, 'ascii');
    signature =
      alg === 'ES256'
        ? cryptoSign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' })
        : cryptoSign('sha256', data, privateKey);
  }
  return `${signingInput}.${base64urlEncode(signature)}`;
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export function parseDuration(text: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(typeof text === 'string' ? text.trim() : '');
  if (match === null) {
    throw new Error(`invalid duration ${JSON.stringify(text)}: expected e.g. 90s, 15m, 1h, 7d or a whole number of seconds`);
  }
  const seconds = Number(match[1]) * DURATION_UNITS[match[2] || 's']!;
  if (!Number.isSafeInteger(seconds)) {
    throw new Error(`invalid duration ${JSON.stringify(text)}: too large`);
  }
  return seconds;
}

// Glob match done by hand: the patterns come from tokens, so building a RegExp from them would
// let a '.' or '+' change meaning and an adversarial pattern cause catastrophic backtracking.
function globMatch(pattern: string, text: string): boolean {
  const pieces = pattern.split('*');
  if (pieces.length === 1) return pattern === text;
  const first = pieces[0]!;
  const last = pieces[pieces.length - 1]!;
  if (text.length < first.length + last.length) return false;
  if (!text.startsWith(first) || !text.endsWith(last)) return false;
  // Leftmost placement of each middle piece is optimal when '*' is the only wildcard:
  // matching earlier never leaves less room for the pieces that follow.
  let pos = first.length;
  const end = text.length - last.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const piece = pieces[i]!;
    if (piece === '') continue;
    const found = text.indexOf(piece, pos);
    if (found === -1 || found + piece.length > end) return false;
    pos = found + piece.length;
  }
  return true;
}

export function channelAllowed(patterns: readonly string[] | undefined, channel: string): boolean {
  if (patterns === undefined || patterns.length === 0) return false;
  for (const pattern of patterns) {
    if (typeof pattern === 'string' && globMatch(pattern, channel)) return true;
  }
  return false;
}
