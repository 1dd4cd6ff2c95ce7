/**
 * HS256 connection tokens: the synchronous check rt-actors does at the upgrade (one HMAC in node:crypto)
 * against jose's jwtVerify (WebCrypto, always asynchronous), on the same token, one after another.
 * Wall time per verification on one thread; both include the claims checks.
 *
 *   node dist/bench/token-verify.js        prints one JSON line
 */
import { pathToFileURL } from 'node:url';
import { median } from './lib.js';
import { createSecretKey } from 'node:crypto';
import { jwtVerify } from 'jose';
import { createJwtVerifier, signJwt } from '../src/auth/jwt.js';

export async function benchTokenVerify(o: { quick?: boolean } = {}): Promise<Array<Record<string, unknown>>> {
  const secret = 'bench-secret-0123456789abcdef0123456789';
  const token = signJwt({ sub: '42', exp: Math.floor(Date.now() / 1000) + 3600, channels: ['private-*'], user_info: { name: 'Ada' } }, { secret });
  const verifier = createJwtVerifier({ secret });
  const key = createSecretKey(Buffer.from(secret, 'utf8'));
  const n = o.quick ? 5_000 : 50_000;

  const syncRun = (): number => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) verifier.verifyNow(token);
    return Number(process.hrtime.bigint() - t0) / n;
  };
  const joseRun = async (): Promise<number> => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await jwtVerify(token, key, { algorithms: ['HS256'] });
    return Number(process.hrtime.bigint() - t0) / n;
  };
  syncRun();
  await joseRun();
  const sync: number[] = [];
  const jose: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    sync.push(syncRun());
    jose.push(await joseRun());
  }
  return [{ bench: 'token-verify', alg: 'HS256', sync_ns: Math.round(median(sync)), jose_async_ns: Math.round(median(jose)), ratio: Math.round((median(jose) / median(sync)) * 100) / 100 }];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const rec of await benchTokenVerify()) console.log(JSON.stringify(rec));
}
