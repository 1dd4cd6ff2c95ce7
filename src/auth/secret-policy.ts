/**
 * How strong an HS256 secret must be. RFC 7518 §3.2 asks for a key at least as long as the hash
 * output (32 bytes for SHA-256); shorter secrets can be brute-forced offline from any one token.
 * A short secret is refused when NODE_ENV=production (the convention Node servers already follow for
 * "this is the real deployment") and warned about otherwise, so development setups keep working.
 */
import { ConfigError } from '../config/load.js';

export const MIN_SECRET_BYTES = 32;

/** Returns a warning to log, throws a ConfigError in production, or returns undefined when the secret is fine or unset. */
export function checkJwtSecret(secret: string, production: boolean): string | undefined {
  if (!secret) return undefined;
  const bytes = Buffer.byteLength(secret, 'utf8');
  if (bytes >= MIN_SECRET_BYTES) return undefined;
  const advice = `the HS256 secret (--jwt-secret / RT_JWT_SECRET) is ${bytes} bytes; use at least ${MIN_SECRET_BYTES} random bytes, e.g. \`openssl rand -base64 48\``;
  if (production) throw new ConfigError('jwtSecret', `${advice} (refused because NODE_ENV=production)`);
  return `${advice}; a short secret can be guessed from any token it signed (this is refused when NODE_ENV=production)`;
}

/**
 * An API key publishes to any channel and disconnects any user. Wrong keys are rate-limited per client
 * address, but a short one still falls to many addresses or to a leak of its length; only warned about,
 * since deployments with a short key would otherwise stop at their next restart.
 */
export const MIN_API_KEY_LENGTH = 16;

export function checkApiKey(key: string): string | undefined {
  if (!key || key.length >= MIN_API_KEY_LENGTH) return undefined;
  return `the API key (--api-key / RT_API_KEY) is ${key.length} characters; use at least ${MIN_API_KEY_LENGTH} random characters, e.g. \`openssl rand -base64 24\`: a short key can be guessed, and it publishes to any channel and disconnects any user`;
}

/**
 * The dashboard token reads every channel (private and presence ones too, through the inspector) and
 * publishes to any channel or user, so a short one is warned about as a short API key is.
 */
export function checkDashboardToken(token: string): string | undefined {
  if (!token || token.length >= MIN_API_KEY_LENGTH) return undefined;
  return `the dashboard token (--dashboard-token / RT_DASHBOARD_TOKEN) is ${token.length} characters; use at least ${MIN_API_KEY_LENGTH} random characters, e.g. \`openssl rand -base64 24\`: a short token can be guessed, and it reads every channel and publishes to any channel or user`;
}
