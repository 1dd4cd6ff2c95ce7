/**
 * Pusher protocol 7 frames. Every message is a JSON text frame `{ event, channel?, data }` whose `data`
 * is itself a JSON string (pusher-js parses it back). Deliveries are encoded once per shard here and
 * published to the `p`-tagged uWS topics like every other codec's.
 */
import { registerCodec, type Encoded } from '../../protocol/codecs.js';
import type { Member, Publication } from '../../protocol/native.js';
import { isHiddenChannel } from '../../runtime/hidden-channels.js';
import { externalName } from './apps.js';
import { JsonData, rawJson } from '../../protocol/encoded-payload.js';
import { jsonNestsDeeper } from '../../protocol/json-depth.js';

/**
 * Pusher's `data` is a string on the wire: strings pass as they are, anything else is JSON-encoded. A
 * binary is {"type":"Buffer","data":[…]}, as nested in an object and on the other JSON transports (a
 * base64 string would be indistinguishable from a string the publisher sent).
 */
export function wireData(data: unknown): string {
  if (typeof data === 'string') return data;
  if (data instanceof Uint8Array && !Buffer.isBuffer(data)) data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return JSON.stringify(data ?? null);
}

/**
 * What a Pusher server SDK sends as `data` (a string, usually JSON) as the other protocols see it: a
 * JSON object or array as that value, so a Socket.IO or native subscriber gets what a Laravel Redis
 * broadcast would give it; otherwise the string itself. The value is carried as the text that came
 * (JsonData), not parsed and written again: every Pusher subscriber gets `data` byte for byte as sent,
 * as Pusher passes it — big integers, key order, spacing and repeated keys included — and the other
 * protocols splice the same text in as the value.
 */
export function fromWireData(data: string): unknown {
  const c = data.charCodeAt(0);
  if (c !== 123 /* { */ && c !== 91 /* [ */) return data;
  // Too deep to carry as a value (json-depth.ts): it stays the string Pusher subscribers get anyway.
  if (jsonNestsDeeper(data)) return data;
  try {
    JSON.parse(data);
  } catch {
    return data;
  }
  return new JsonData(data);
}

export function frame(event: string, data: unknown, channel?: string): string {
  return channel === undefined ? JSON.stringify({ event, data }) : JSON.stringify({ event, channel, data });
}

/** `pusher:error`; `code` is one of Pusher's 4000–4399 codes or null for a plain protocol error. */
export function errorFrame(code: number | null, message: string): string {
  return JSON.stringify({ event: 'pusher:error', data: { code, message } });
}

/**
 * Marks a delivery to a user (server-to-user): the codec cannot know which user it is for, so the
 * client inserts its own `#server-to-user-<id>` channel when it sends (see PusherClient.sendEncoded).
 */
export const USER_MARK = '\u0000';

/**
 * Marks a join (`+`) or leave (`-`) of a hidden online channel, followed by the user id: only watchers
 * receive those (through sendEncoded), and PusherClient turns them into watchlist events.
 */
export const WATCH_MARK = '\u0001';

export function memberData(m: Member): string {
  return JSON.stringify(m.user_info === undefined ? { user_id: m.user_id } : { user_id: m.user_id, user_info: m.user_info });
}

/**
 * An event frame for a publication. With the payload still JSON text (see encoded-payload.ts) it is spliced:
 * Pusher's `data` is a string, so a string payload's JSON text is already the field, and any other
 * payload's text is quoted once, exactly as frame(event, wireData(data)) would write it.
 */
function frameOfPublication(p: Publication): string {
  const raw = rawJson(p);
  if (raw === undefined) return frame(p.event, wireData(p.data), externalName(p.channel));
  return `{"event":${JSON.stringify(p.event)},"channel":${JSON.stringify(externalName(p.channel))},"data":${raw.charCodeAt(0) === 34 ? raw : JSON.stringify(raw)}}`;
}

export const PUSHER_CODEC = registerCodec({
  name: 'pusher',
  tag: 'p',
  binary: false,
  pub: (p: Publication): Encoded =>
    p.user === undefined
      ? frameOfPublication(p)
      : // A client event on a presence channel: Pusher tells who sent it, beside `data` (pusher-js reads event.user_id).
        JSON.stringify({ event: p.event, channel: externalName(p.channel), data: wireData(p.data), user_id: p.user }),
  join: (channel: string, m: Member): Encoded =>
    isHiddenChannel(channel) ? `${WATCH_MARK}+${m.user_id}` : frame('pusher_internal:member_added', memberData(m), externalName(channel)),
  leave: (channel: string, m: Member): Encoded =>
    isHiddenChannel(channel) ? `${WATCH_MARK}-${m.user_id}` : frame('pusher_internal:member_removed', JSON.stringify({ user_id: m.user_id }), externalName(channel)),
  // With the text the HTTP API received, `data` is that text, as on a channel (frameOfPublication).
  user: (event: string, data: unknown, js?: string): Encoded => USER_MARK + JSON.stringify({ event, data: js ?? wireData(data) }),
  // Sent only for channels of apps with subscriptionCountEvents (subscription-count.ts decides which).
  count: (channel: string, n: number): Encoded => frame('pusher_internal:subscription_count', JSON.stringify({ subscription_count: n }), externalName(channel)),
});
