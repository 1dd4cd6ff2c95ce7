/**
 * What a refused connection is told: which limit fired, its value, and the option that raises it.
 * A refusal that only says "rate limited" sends operators hunting; this one names the knob.
 */
import { RtError } from '../errors.js';
import type { AdmitResult } from './shared-limits.js';
import type { ServerConfig } from '../config/schema.js';


type Refusal = Exclude<AdmitResult, 'ok'>;
type Limits = Pick<ServerConfig, 'maxConnections' | 'maxConnectionsPerIp' | 'connectionRatePerIp' | 'trustProxy'>;

const PROXY_HINT = ' Behind a reverse proxy every client shares its address: list the proxy in --trust-proxy so each client is counted by its own.';

export function admissionError(result: Refusal, ip: string, c: Limits): RtError {
  const behindProxy = c.trustProxy.length === 0 ? PROXY_HINT : '';
  switch (result) {
    case 'connection_rate_limited':
      return new RtError(
        result,
        `connection refused: more than ${c.connectionRatePerIp} new connections per second from ${ip} (limit --connection-rate-per-ip / RT_CONNECTION_RATE_PER_IP; raise it, or 0 turns it off); retry in a second.${behindProxy}`,
        429,
      );
    case 'too_many_connections_from_ip':
      return new RtError(
        result,
        `connection refused: ${ip} already has ${c.maxConnectionsPerIp} open connections (limit --max-connections-per-ip / RT_MAX_CONNECTIONS_PER_IP; raise it, or 0 turns it off).${behindProxy}`,
        429,
      );
    case 'too_many_connections':
      return new RtError(
        result,
        `connection refused: this host is at its limit of ${c.maxConnections} open connections (--max-connections / RT_MAX_CONNECTIONS); add hosts or raise it`,
        503,
      );
  }
}
