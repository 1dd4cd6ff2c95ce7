/**
 * Piscina worker for CPU-heavy work taken off the shards: verifying RS256/ES256 tokens (50–100 µs
 * each here; a reconnect storm of thousands would stall a shard's event loop). Errors come back as
 * `{ error: { code, message } }` so the shard can answer the client with the verifier's own code.
 */
import { workerData } from 'node:worker_threads';
import { createJwtVerifier, JwtError, type JwtClaims } from '../src/auth/jwt.js';

const data = workerData as { publicKey: string; audience: string[]; issuer: string[] };
const verifier = createJwtVerifier({ publicKey: data.publicKey, audience: data.audience, issuer: data.issuer });

export default async function verifyToken(task: { token: string }): Promise<{ claims: JwtClaims } | { error: { code: string; message: string } }> {
  try {
    return { claims: await verifier.verify(task.token) };
  } catch (err) {
    if (err instanceof JwtError) return { error: { code: err.code, message: err.message } };
    return { error: { code: 'token_malformed', message: 'token could not be verified' } };
  }
}
