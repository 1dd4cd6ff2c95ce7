/**
 * Event names a publication may not carry, because some transport's clients would take it for the
 * server's own event: SSE's control events (rt:…), pusher-js's protocol and presence events (pusher:…,
 * pusher_internal:… — a member publishing pusher_internal:member_removed struck a member from every
 * pusher-js client's list), the Socket.IO gateway's presence and token events and Socket.IO's reserved
 * names (a publication is emitted to Socket.IO clients under its event name). It lives with the client
 * library, which checks its own publications with it and is bundled from this folder alone; the server
 * imports it from here. No imports.
 */

/**
 * Event names the official Socket.IO client and server refuse on the wire (their decoders close the
 * connection); rejecting them keeps us from accepting or emitting something a real peer would treat as fatal.
 */
export const RESERVED_EVENTS: ReadonlySet<string> = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']);

const PREFIXES = ['rt:', 'pusher:', 'pusher_internal:'];
const NAMES = new Set(['presence:subscribed', 'presence:joining', 'presence:leaving', 'token:expiring', 'token:expired', ...RESERVED_EVENTS]);

/** Why `event` cannot be published, or undefined when it can. */
export function reservedEvent(event: string): string | undefined {
  const prefix = PREFIXES.find((p) => event.startsWith(p));
  if (prefix) return `event names starting with "${prefix}" are reserved for the server's own events`;
  if (NAMES.has(event)) return `"${event}" is reserved for the server's own events`;
  return undefined;
}
