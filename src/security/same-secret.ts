/**
 * Whether a presented secret (an API key, a dashboard token) is the configured one, in a time that
 * depends on the presented string's length only: every character is compared, against the secret's
 * character at the same position modulo its length, and the differences are OR-ed, with no early exit.
 * The lengths enter the result, not the time. Used on every API request: a SHA-256 of the presented
 * key for timingSafeEqual over equal lengths cost ~2 µs of a 40 µs `POST /api/publish` (a CPU profile,
 * docs/benchmarks.md, seventh session); this loop costs tens of nanoseconds.
 */
export function sameSecret(given: string, secret: string): boolean {
  const n = secret.length;
  if (n === 0) return false;
  let diff = given.length ^ n;
  for (let i = 0; i < given.length; i++) diff |= given.charCodeAt(i) ^ secret.charCodeAt(i % n);
  return diff === 0;
}
