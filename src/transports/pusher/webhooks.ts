/** Pusher webhooks: not sent yet (see docs/pusher.md); the gateway runs without them. */
import type { PusherGateway, PusherHooks } from './gateway.js';

export function startWebhooks(_gw: PusherGateway): PusherHooks | undefined {
  return undefined;
}
