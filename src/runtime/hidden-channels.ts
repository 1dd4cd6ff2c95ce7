/**
 * Hidden channels: channels the server uses for its own bookkeeping, on the ordinary channel machinery
 * (actors, presence across shards and hosts, Redis dead-host sweeps) but out of clients' reach. Their
 * names contain a space, which no transport accepts in a channel name (validChannelName, Pusher's
 * channel pattern), so nobody can subscribe to, publish to or query one by spelling it. They are left
 * out of channel lists and webhooks; internal gauges (rt_channels, rt_subscriptions) count them, since
 * they cost what any channel costs.
 *
 * One kind exists: the online channel of a Pusher user (watchlist events, docs/pusher.md). Every
 * signed-in connection of the user is a member; watchers observe it without being members.
 */

/** Presence kind (`presence-`), so the actor keeps one member per user, with join/leave once per user. */
const ONLINE_PREFIX = 'presence-#online ';

/**
 * The online channel of `user` in the app whose internal suffix is `appSuffix`. The id is base64url
 * so that nothing in it (spaces, the app separator ` @`) can be mistaken for part of the name's structure.
 */
export function onlineChannel(user: string, appSuffix: string): string {
  return ONLINE_PREFIX + Buffer.from(user, 'utf8').toString('base64url') + appSuffix;
}

export function isHiddenChannel(name: string): boolean {
  return name.startsWith(ONLINE_PREFIX);
}
