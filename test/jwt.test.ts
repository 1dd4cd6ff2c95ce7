import t from 'tap';
import { createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import {
  JwtError,
  channelAllowed,
  createJwtVerifier,
  parseDuration,
  signJwt,
  type JwtErrorCode,
} from '../src/auth/jwt.js';

const SECRET = 'test-secret-with-enough-entropy-0123456789';
const NOW = 1_800_000_000;
const clock = () => NOW;

const rsa = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const ec = generateKeyPairSync('ec', {
  namedCurve: 'P-256',
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Builds an HS256 token from raw segment text, so tests can sign content signJwt would never emit. */
function hsRaw(headerPart: string, payloadPart: string, secret = SECRET): string {
  const sig = createHmac('sha256', secret).update(`${headerPart}.${payloadPart}`).digest('base64url');
  return `${headerPart}.${payloadPart}.${sig}`;
}

/** The assertions rejects() needs, so it accepts any subtest whatever plugins are loaded. */
type Asserts = Pick<typeof t, 'ok' | 'equal' | 'match'>;

async function rejects(tt: Asserts, fn: () => unknown, code: JwtErrorCode, message?: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  tt.ok(caught instanceof JwtError, `throws JwtError (${code})`);
  tt.equal((caught as JwtError | undefined)?.code, code);
  if (message) tt.match((caught as Error | undefined)?.message, message);
}

const hs = createJwtVerifier({ secret: SECRET, now: clock });

t.test('HS256 round trip', async (tt) => {
  const token = signJwt(
    { sub: 'u1', user_info: { name: 'Ada' }, channels: ['private-a'], exp: NOW + 60, iat: NOW },
    { secret: SECRET },
  );
  const claims = await hs.verify(token);
  tt.equal(claims.sub, 'u1');
  tt.same(claims.user_info, { name: 'Ada' });
  tt.same(claims.channels, ['private-a']);
  tt.equal(claims.exp, NOW + 60);
  tt.same(hs.algorithms, ['HS256']);
  const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString());
  tt.same(header, { alg: 'HS256', typ: 'JWT' });
  tt.end();
});

t.test('RS256 round trip', async (tt) => {
  const v = createJwtVerifier({ publicKey: rsa.publicKey, now: clock });
  tt.same(v.algorithms, ['RS256']);
  const token = signJwt({ sub: 'r1' }, { privateKey: rsa.privateKey, algorithm: 'RS256' });
  tt.equal((await v.verify(token)).sub, 'r1');
  tt.end();
});

t.test('ES256 round trip uses raw r||s signatures', async (tt) => {
  const v = createJwtVerifier({ publicKey: ec.publicKey, now: clock });
  tt.same(v.algorithms, ['ES256']);
  const token = signJwt({ sub: 'e1' }, { privateKey: ec.privateKey, algorithm: 'ES256' });
  tt.equal(Buffer.from(token.split('.')[2]!, 'base64url').length, 64);
  tt.equal((await v.verify(token)).sub, 'e1');
  tt.end();
});

t.test('ES256 refuses a DER-encoded signature', async (tt) => {
  const v = createJwtVerifier({ publicKey: ec.publicKey, now: clock });
  const token = signJwt({ sub: 'e1' }, { privateKey: ec.privateKey, algorithm: 'ES256' });
  const [h, p, s] = token.split('.') as [string, string, string];
  const raw = Buffer.from(s, 'base64url');
  // Re-encode r||s as a DER SEQUENCE of two INTEGERs, which is what a non-JOSE signer emits.
  const int = (b: Buffer) => {
    let v = b;
    while (v.length > 1 && v[0] === 0 && v[1]! < 0x80) v = v.subarray(1);
    if (v[0]! >= 0x80) v = Buffer.concat([Buffer.from([0]), v]);
    return Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([int(raw.subarray(0, 32)), int(raw.subarray(32))]);
  const der = Buffer.concat([Buffer.from([0x30, body.length]), body]);
  await rejects(tt, () => v.verify(`${h}.${p}.${der.toString('base64url')}`), 'token_bad_signature');
  tt.end();
});

t.test('both a secret and a public key: each algorithm uses its own key', async (tt) => {
  const v = createJwtVerifier({ secret: SECRET, publicKey: rsa.publicKey, now: clock });
  tt.same(v.algorithms, ['HS256', 'RS256']);
  tt.equal((await v.verify(signJwt({ sub: 'a' }, { secret: SECRET }))).sub, 'a');
  tt.equal((await v.verify(signJwt({ sub: 'b' }, { privateKey: rsa.privateKey, algorithm: 'RS256' }))).sub, 'b');
  // The public key PEM is not the HMAC secret even when both are configured.
  await rejects(tt, () => v.verify(signJwt({ sub: 'x' }, { secret: rsa.publicKey })), 'token_bad_signature');
  tt.end();
});

t.test('sub given as a number becomes a string', async (tt) => {
  const claims = await hs.verify(signJwt({ sub: 42 }, { secret: SECRET }));
  tt.equal(claims.sub, '42');
  tt.equal(typeof claims.sub, 'string');
  tt.end();
});

t.test('expiry and not-before honour the clock skew', async (tt) => {
  const strict = createJwtVerifier({ secret: SECRET, now: clock, clockSkewSeconds: 0 });
  await rejects(tt, () => strict.verify(signJwt({ sub: 'u', exp: NOW }, { secret: SECRET })), 'token_expired');
  await rejects(tt, () => hs.verify(signJwt({ sub: 'u', exp: NOW - 31 }, { secret: SECRET })), 'token_expired', /token expired at 2027-/);
  // Within the default 30 s of skew the token still passes.
  tt.equal((await hs.verify(signJwt({ sub: 'u', exp: NOW - 10 }, { secret: SECRET }))).sub, 'u');

  await rejects(tt,
    () => hs.verify(signJwt({ sub: 'u', nbf: NOW + 120 }, { secret: SECRET })),
    'token_not_yet_valid',
    /not valid before 2027-/,
  );
  tt.equal((await hs.verify(signJwt({ sub: 'u', nbf: NOW + 10 }, { secret: SECRET }))).sub, 'u');
  await rejects(tt, () => strict.verify(signJwt({ sub: 'u', nbf: NOW + 1 }, { secret: SECRET })), 'token_not_yet_valid');
  // An absurd exp still yields a readable message instead of a RangeError from Date.
  await rejects(tt, () => hs.verify(signJwt({ sub: 'u', exp: -1e300 }, { secret: SECRET })), 'token_expired', /seconds since 1970/);
  tt.end();
});

t.test('default clock is wall time', async (tt) => {
  const v = createJwtVerifier({ secret: SECRET });
  const wall = Math.floor(Date.now() / 1000);
  tt.equal((await v.verify(signJwt({ sub: 'u', exp: wall + 600 }, { secret: SECRET }))).sub, 'u');
  await rejects(tt, () => v.verify(signJwt({ sub: 'u', exp: wall - 600 }, { secret: SECRET })), 'token_expired');
  tt.end();
});

t.test('bad signature and tampering', async (tt) => {
  await rejects(tt, () => hs.verify(signJwt({ sub: 'u' }, { secret: 'another-secret' })), 'token_bad_signature', /signature does not match/);

  const [h, p, s] = signJwt({ sub: 'u', channels: ['private-a'] }, { secret: SECRET }).split('.') as [string, string, string];
  const forged = b64({ sub: 'admin', channels: ['*'] });
  await rejects(tt, () => hs.verify(`${h}.${forged}.${s}`), 'token_bad_signature');
  await rejects(tt, () => hs.verify(`${h}.${p}.`), 'token_bad_signature');
  const flipped = Buffer.from(s, 'base64url');
  flipped[0] = flipped[0]! ^ 1;
  await rejects(tt, () => hs.verify(`${h}.${p}.${flipped.toString('base64url')}`), 'token_bad_signature');
  await rejects(tt, () => hs.verify(`${h}.${p}.${Buffer.from(s, 'base64url').subarray(0, 30).toString('base64url')}`), 'token_bad_signature');

  const rv = createJwtVerifier({ publicKey: rsa.publicKey, now: clock });
  const [rh, , rs] = signJwt({ sub: 'u' }, { privateKey: rsa.privateKey, algorithm: 'RS256' }).split('.') as [string, string, string];
  await rejects(tt, () => rv.verify(`${rh}.${forged}.${rs}`), 'token_bad_signature');

  const ev = createJwtVerifier({ publicKey: ec.publicKey, now: clock });
  const [eh, , es] = signJwt({ sub: 'u' }, { privateKey: ec.privateKey, algorithm: 'ES256' }).split('.') as [string, string, string];
  await rejects(tt, () => ev.verify(`${eh}.${forged}.${es}`), 'token_bad_signature');
  // A key of the right type but the wrong pair.
  const otherEc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const stranger = signJwt(
    { sub: 'u' },
    { privateKey: otherEc.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, algorithm: 'ES256' },
  );
  await rejects(tt, () => ev.verify(stranger), 'token_bad_signature');
  tt.end();
});

t.test('alg none is always refused', async (tt) => {
  const payload = b64({ sub: 'u' });
  for (const alg of ['none', 'None', 'NONE']) {
    await rejects(tt, () => hs.verify(`${b64({ alg, typ: 'JWT' })}.${payload}.`), 'token_alg_not_allowed', /"none".*never accepted/);
  }
  const both = createJwtVerifier({ secret: SECRET, publicKey: rsa.publicKey, now: clock });
  await rejects(tt, () => both.verify(`${b64({ alg: 'none' })}.${payload}.`), 'token_alg_not_allowed');
  tt.end();
});

t.test('algorithm confusion is refused', async (tt) => {
  const rv = createJwtVerifier({ publicKey: rsa.publicKey, now: clock });
  // The classic attack: HMAC keyed with the server's public key, which an attacker knows.
  const confused = signJwt({ sub: 'admin' }, { secret: rsa.publicKey });
  await rejects(tt, () => rv.verify(confused), 'token_alg_not_allowed', /HS256/);

  const ev = createJwtVerifier({ publicKey: ec.publicKey, now: clock });
  await rejects(tt, () => ev.verify(signJwt({ sub: 'admin' }, { secret: ec.publicKey })), 'token_alg_not_allowed');
  // An RS256 token presented to an ES256 verifier.
  await rejects(tt, () => ev.verify(signJwt({ sub: 'u' }, { privateKey: rsa.privateKey, algorithm: 'RS256' })), 'token_alg_not_allowed');

  // And the reverse: an asymmetric token where only a secret is configured.
  await rejects(tt,
    () => hs.verify(signJwt({ sub: 'u' }, { privateKey: rsa.privateKey, algorithm: 'RS256' })),
    'token_alg_not_allowed',
    /only accepts HS256/,
  );
  await rejects(tt, () => hs.verify(hsRaw(b64({ alg: 'HS512' }), b64({ sub: 'u' }))), 'token_alg_not_allowed');
  await rejects(tt, () => hs.verify(hsRaw(b64({ typ: 'JWT' }), b64({ sub: 'u' }))), 'token_malformed', /alg/);
  tt.end();
});

t.test('malformed tokens', async (tt) => {
  const good = signJwt({ sub: 'u' }, { secret: SECRET });
  const [h, p, s] = good.split('.') as [string, string, string];

  await rejects(tt, () => hs.verify(''), 'token_malformed');
  await rejects(tt, () => hs.verify(`${h}.${p}`), 'token_malformed', /3 dot-separated parts/);
  await rejects(tt, () => hs.verify(`${good}.x`), 'token_malformed', /found 4/);
  await rejects(tt, () => hs.verify('abc'), 'token_malformed');

  // Characters outside the base64url alphabet, and padding.
  await rejects(tt, () => hs.verify(`${h}.${p}+.${s}`), 'token_malformed', /is not base64url/);
  await rejects(tt, () => hs.verify(`${h}.${p}.${s}=`), 'token_malformed');
  await rejects(tt, () => hs.verify(`${h}=.${p}.${s}`), 'token_malformed');
  await rejects(tt, () => hs.verify(`${h}.${p} .${s}`), 'token_malformed');
  // Length 1 mod 4 cannot be produced by any encoder.
  let oneMod4 = p;
  while (oneMod4.length % 4 !== 1) oneMod4 += 'A';
  await rejects(tt, () => hs.verify(hsRaw(h, oneMod4)), 'token_malformed', /length/);
  // Non-zero unused bits: "eR" and "eQ" decode to the same byte; only the canonical form is accepted.
  const twoCharTail = b64('{"sub":"u"}'); // 11 bytes → ends in a 3-char group
  tt.equal(twoCharTail.length % 4, 3);
  const last = twoCharTail.at(-1)!;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const sibling = alphabet[alphabet.indexOf(last) ^ 1]!;
  const nonCanonical = twoCharTail.slice(0, -1) + sibling;
  tt.same(Buffer.from(nonCanonical, 'base64url'), Buffer.from(twoCharTail, 'base64url'), 'lenient decoding would accept it');
  await rejects(tt, () => hs.verify(hsRaw(h, nonCanonical)), 'token_malformed', /canonical/);
  tt.equal((await hs.verify(hsRaw(h, twoCharTail))).sub, 'u');

  // Well-signed but not JSON, or JSON that is not an object.
  await rejects(tt, () => hs.verify(hsRaw(b64('not json'), p)), 'token_malformed', /header is not valid JSON/);
  await rejects(tt, () => hs.verify(hsRaw(h, b64('not json'))), 'token_malformed', /payload is not valid JSON/);
  await rejects(tt, () => hs.verify(hsRaw(h, b64('["sub"]'))), 'token_malformed', /JSON object/);
  await rejects(tt, () => hs.verify(hsRaw(h, b64('null'))), 'token_malformed', /JSON object/);
  // Invalid UTF-8 inside a string: a lenient decoder would turn it into U+FFFD and accept it.
  const badUtf8 = Buffer.concat([Buffer.from('{"sub":"'), Buffer.from([0xff]), Buffer.from('"}')]);
  await rejects(tt, () => hs.verify(hsRaw(h, badUtf8.toString('base64url'))), 'token_malformed', /payload is not valid JSON/);
  await rejects(tt, () => hs.verify(hsRaw(b64({ alg: 'HS256', crit: ['b64'], b64: false }), p)), 'token_malformed', /crit/);

  // Oversized: a validly signed token over 8 KiB is still refused.
  const big = signJwt({ sub: 'u', pad: 'x'.repeat(9000) }, { secret: SECRET });
  tt.ok(big.length > 8192);
  await rejects(tt, () => hs.verify(big), 'token_malformed', /limit is 8192/);
  const fits = signJwt({ sub: 'u', pad: 'x'.repeat(5000) }, { secret: SECRET });
  tt.equal((await hs.verify(fits)).sub, 'u');
  tt.end();
});

t.test('claim validation', async (tt) => {
  const sign = (claims: Record<string, unknown>) => signJwt(claims, { secret: SECRET });
  await rejects(tt, () => hs.verify(sign({ name: 'no sub' })), 'token_invalid_claims', /"sub".*missing/);
  await rejects(tt, () => hs.verify(sign({ sub: '' })), 'token_invalid_claims', /empty/);
  await rejects(tt, () => hs.verify(sign({ sub: null })), 'token_invalid_claims', /got null/);
  await rejects(tt, () => hs.verify(sign({ sub: true })), 'token_invalid_claims', /got a boolean/);
  await rejects(tt, () => hs.verify(sign({ sub: { id: 1 } })), 'token_invalid_claims');
  await rejects(tt, () => hs.verify(sign({ sub: ['1'] })), 'token_invalid_claims', /got an array/);
  // Reserved for other Pusher apps' users (src/runtime/app-scope.ts).
  await rejects(tt, () => hs.verify(sign({ sub: '42 @admin' })), 'token_invalid_claims', /may not contain " @"/);
  // JSON cannot carry Infinity, but 1e999 parses to it.
  await rejects(tt, () => hs.verify(hsRaw(b64({ alg: 'HS256' }), b64('{"sub":1e999}'))), 'token_invalid_claims');

  await rejects(tt, () => hs.verify(sign({ sub: 'u', channels: 'private-a' })), 'token_invalid_claims', /array/);
  await rejects(tt, () => hs.verify(sign({ sub: 'u', channels: { 0: 'private-a' } })), 'token_invalid_claims');
  await rejects(tt, () => hs.verify(sign({ sub: 'u', channels: ['private-a', 7] })), 'token_invalid_claims', /entry 1/);
  tt.same((await hs.verify(sign({ sub: 'u', channels: [] }))).channels, []);

  await rejects(tt, () => hs.verify(sign({ sub: 'u', exp: String(NOW + 60) })), 'token_invalid_claims', /"exp"/);
  await rejects(tt, () => hs.verify(sign({ sub: 'u', nbf: 'soon' })), 'token_invalid_claims', /"nbf"/);
  await rejects(tt, () => hs.verify(sign({ sub: 'u', iat: null })), 'token_invalid_claims', /"iat"/);
  tt.end();
});

t.test('unconfigured verifier', async (tt) => {
  const token = signJwt({ sub: 'u' }, { secret: SECRET });
  await rejects(tt, () => createJwtVerifier({}).verify(token), 'token_not_configured', /not configured/);
  // An empty secret would make forgery trivial, so it counts as no secret at all.
  const empty = createJwtVerifier({ secret: '', publicKey: '' });
  tt.same(empty.algorithms, []);
  await rejects(tt, () => empty.verify(token), 'token_not_configured');
  tt.end();
});

t.test('construction errors', async (tt) => {
  tt.throws(() => createJwtVerifier({ publicKey: '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n' }), {
    message: /could not be parsed/,
  });
  tt.throws(() => createJwtVerifier({ publicKey: '/etc/rt-actors/jwt.pem' }), { message: /path is not accepted/ });
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
  tt.throws(() => createJwtVerifier({ publicKey: p384 }), { message: /P-256/ });
  const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
  tt.throws(() => createJwtVerifier({ publicKey: ed }), { message: /ed25519/ });
  tt.throws(() => createJwtVerifier({ secret: SECRET, clockSkewSeconds: -1 }), { message: /clock skew/ });
  tt.end();
});

t.test('signJwt input errors', async (tt) => {
  tt.throws(() => signJwt({ sub: 'u' }, { secret: '' }), { message: /non-empty/ });
  tt.throws(() => signJwt({ sub: 'u' }, { privateKey: rsa.privateKey, algorithm: 'ES256' }), { message: /RS256, not ES256/ });
  tt.throws(() => signJwt({ sub: 'u' }, { privateKey: ec.privateKey, algorithm: 'RS256' }), { message: /ES256, not RS256/ });
  tt.throws(() => signJwt({ sub: 'u' }, { privateKey: 'garbage', algorithm: 'RS256' }), { message: /could not be parsed/ });
  tt.end();
});

t.test('channelAllowed', async (tt) => {
  tt.equal(channelAllowed(undefined, 'private-a'), false);
  tt.equal(channelAllowed([], 'private-a'), false);

  tt.equal(channelAllowed(['private-a'], 'private-a'), true);
  tt.equal(channelAllowed(['private-a'], 'private-ab'), false);
  tt.equal(channelAllowed(['private-a'], 'private-'), false);
  tt.equal(channelAllowed(['presence-x', 'private-a'], 'private-a'), true, 'any pattern may match');

  tt.equal(channelAllowed(['private-orders.*'], 'private-orders.42'), true);
  tt.equal(channelAllowed(['private-orders.*'], 'private-orders.'), true, '* matches an empty run');
  tt.equal(channelAllowed(['private-orders.*'], 'private-orders'), false);
  tt.equal(channelAllowed(['private-orders.*'], 'private-ordersX42'), false);
  tt.equal(channelAllowed(['presence-*'], 'presence-room.1'), true);
  tt.equal(channelAllowed(['presence-*'], 'private-room.1'), false);
  tt.equal(channelAllowed(['*'], 'anything-at-all'), true);
  tt.equal(channelAllowed(['*-orders'], 'private-orders'), true);
  tt.equal(channelAllowed(['*-orders'], 'private-orders.1'), false, 'suffix is anchored');
  tt.equal(channelAllowed(['private-*.*.log'], 'private-a.b.log'), true);
  tt.equal(channelAllowed(['private-*.*.log'], 'private-ab.log'), false);
  tt.equal(channelAllowed(['a*b*c'], 'abc'), true);
  tt.equal(channelAllowed(['a*b*c'], 'acb'), false);
  tt.equal(channelAllowed(['ab*ba'], 'aba'), false, 'prefix and suffix may not overlap');
  tt.equal(channelAllowed(['a**'], 'a'), true);

  // Regex metacharacters are literal.
  tt.equal(channelAllowed(['private-a.b'], 'private-aXb'), false);
  tt.equal(channelAllowed(['private-a.b'], 'private-a.b'), true);
  tt.equal(channelAllowed(['private-a+'], 'private-aa'), false);
  tt.equal(channelAllowed(['private-[ab]'], 'private-a'), false);
  tt.equal(channelAllowed(['private-[ab]'], 'private-[ab]'), true);
  tt.equal(channelAllowed(['private-?'], 'private-x'), false);
  tt.equal(channelAllowed(['.*'], 'private-x'), false);
  tt.equal(channelAllowed(['(a|b)*'], '(a|b)zz'), true);
  tt.equal(channelAllowed(['^private$'], 'private'), false);

  // A pattern that would backtrack catastrophically as a naive regex finishes at once.
  const started = Date.now();
  tt.equal(channelAllowed(['*a*a*a*a*a*a*a*a*a*a*b'], 'a'.repeat(5000)), false);
  tt.ok(Date.now() - started < 1000);
  tt.end();
});

t.test('parseDuration', async (tt) => {
  tt.equal(parseDuration('90s'), 90);
  tt.equal(parseDuration('15m'), 900);
  tt.equal(parseDuration('1h'), 3600);
  tt.equal(parseDuration('7d'), 604800);
  tt.equal(parseDuration('45'), 45);
  tt.equal(parseDuration('0'), 0);
  tt.equal(parseDuration(' 2m '), 120);
  for (const bad of ['', 'abc', '1.5h', '-5s', '5 s', '5w', '1h30m', 'h', '1e3', '0x10', '99999999999999999999d']) {
    tt.throws(() => parseDuration(bad), { message: new RegExp(`invalid duration ${JSON.stringify(bad).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) }, `rejects ${JSON.stringify(bad)}`);
  }
  tt.end();
});

t.test('a 64-bit integer sub (a Laravel bigint id) keeps its digits, HS256 and RS256', async (tt) => {
  // JSON.stringify cannot write such a number: the payload is written as PHP's json_encode does.
  const payload = b64('{"sub":12345678901234567891,"exp":1900000000}');
  tt.equal((await hs.verify(hsRaw(b64({ alg: 'HS256', typ: 'JWT' }), payload))).sub, '12345678901234567891', 'HS256: the id as signed, not 12345678901234567000');
  const rs = createJwtVerifier({ publicKey: rsa.publicKey, now: clock });
  const head = b64({ alg: 'RS256', typ: 'JWT' });
  const rsToken = `${head}.${payload}.${cryptoSign('sha256', Buffer.from(`${head}.${payload}`), rsa.privateKey).toString('base64url')}`;
  tt.equal((await rs.verify(rsToken)).sub, '12345678901234567891', 'RS256: the id as signed');
  tt.end();
});
