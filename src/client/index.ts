/**
 * rt-actors/client — the browser and Node client (docs/transports.md). No runtime dependencies:
 * the same modules are concatenated into the browser bundle served at /client.js (window.RtActors).
 */
export { RtClient, Channel, PresenceChannel, RtClientError, connect } from './client.js';
export type { ClientOptions, ConnectionState, Member, MessageMeta, Publication } from './client.js';
export { SseParser } from './sse-parser.js';
export type { SseEvent } from './sse-parser.js';
export { TRANSPORTS } from './transports.js';
export type { TransportName, Frame, CloseInfo } from './transports.js';
