/**
 * Which channels announce their subscriber count (Pusher's `subscription_count` events, an opt-in app
 * option): the non-presence channels of apps with `subscriptionCountEvents`. Decided from the
 * configuration alone, so every shard — and every host with the same configuration — agrees, and the
 * channel actors and the Redis broker can ask without knowing anything about Pusher apps.
 */
import { channelKind } from '../../auth/channels.js';
import type { ServerConfig } from '../../config/schema.js';
import { isHiddenChannel } from '../../runtime/hidden-channels.js';
import { AppRegistry, externalName, resolveApps } from './apps.js';

/** Undefined when no app wants the events: then nothing on the subscribe path changes at all. */
export function subscriptionCountPolicy(cfg: ServerConfig): ((channel: string) => boolean) | undefined {
  let registry: AppRegistry;
  try {
    registry = new AppRegistry(resolveApps(cfg));
  } catch {
    return undefined; // an invalid configuration fails the start on the main thread (checkPusherConfig)
  }
  if (!registry.apps.some((a) => a.subscriptionCountEvents)) return undefined;
  // Presence channels have members instead (Pusher never sends them a count); hidden channels are ours.
  return (channel) => !isHiddenChannel(channel) && channelKind(externalName(channel)) !== 'presence' && registry.ofChannel(channel)?.subscriptionCountEvents === true;
}
