/**
 * Wire codecs turn a delivery into the bytes one kind of client expects. A shard encodes each delivery
 * once per codec that has local subscribers and hands the bytes to uWS topics (tag + channel).
 */
import type { Member, Publication } from './native.js';
import { encodeFrame, messageFrame, messageFrameJson, messageFrameMsgpack } from './native.js';
import { EncodedPublication, JsonData, rawJson, rawMsgpack } from './encoded-payload.js';

export type Encoded = string | Uint8Array;

export interface WireCodec {
  /** Small index into per-delivery memo arrays; assigned by registerCodec. */
  id: number;
  name: string;
  /** Prefix of this codec's uWS topics; unique per codec. */
  tag: string;
  binary: boolean;
  pub(p: Publication): Encoded;
  join(channel: string, m: Member): Encoded;
  leave(channel: string, m: Member): Encoded;
  /** `js`: `data`'s JSON text as the publisher sent it, when known (see the `user!` notice). */
  user(event: string, data: unknown, js?: string): Encoded;
  /** A channel actor's private message to one subscriber (no offset). Defaults to `pub` without one. */
  push?(channel: string, event: string, data: unknown): Encoded;
  /** push() of data given as JSON text, spliced; codecs without it get the value (or `pub` the text). */
  pushJson?(channel: string, event: string, js: string): Encoded;
  /** The channel actor removed this subscriber from `channel`. Defaults to a push of event `kicked`. */
  kicked?(channel: string, reason: string): Encoded;
  /**
   * The channel's subscriber count changed (Pusher's subscription_count). Only protocols that have such
   * an event define it; the subscribers of other codecs are sent nothing.
   */
  count?(channel: string, n: number): Encoded;
  /**
   * For codecs where one delivery may need several WebSocket frames (Socket.IO binary attachments):
   * splits an encoded delivery into frames, or returns undefined when it is a single frame.
   */
  frames?(e: Encoded): readonly Encoded[] | undefined;
}

const codecs: WireCodec[] = [];

export function registerCodec(c: Omit<WireCodec, 'id'>): WireCodec {
  const existing = codecs.find((x) => x.tag === c.tag);
  if (existing) return existing;
  const codec = { ...c, id: codecs.length } as WireCodec;
  codecs.push(codec);
  return codec;
}

export function allCodecs(): readonly WireCodec[] {
  return codecs;
}

function nativeCodec(format: 'json' | 'msgpack', tag: string): WireCodec {
  return registerCodec({
    name: format,
    tag,
    binary: format === 'msgpack',
    pub:
      format === 'json'
        ? (p) => {
            const raw = rawJson(p);
            return raw === undefined ? encodeFrame(messageFrame(p), format) : messageFrameJson(p, raw);
          }
        : (p) => {
            const raw = rawMsgpack(p);
            return raw === undefined ? encodeFrame(messageFrame(p), format) : messageFrameMsgpack(p, raw);
          },
    join: (channel, member) => encodeFrame({ op: 'join', channel, member }, format),
    leave: (channel, member) => encodeFrame({ op: 'leave', channel, member }, format),
    user: (event, data) => encodeFrame({ op: 'message', event, data }, format),
    push: (channel, event, data) => encodeFrame({ op: 'message', channel, event, data }, format),
    ...(format === 'json' ? { pushJson: (channel: string, event: string, js: string) => `{"op":"message","channel":${JSON.stringify(channel)},"event":${JSON.stringify(event)},"data":${js}}` } : {}),
    kicked: (channel, reason) => encodeFrame({ op: 'kicked', channel, reason }, format),
  });
}

export const JSON_CODEC = nativeCodec('json', 'j');
export const MSGPACK_CODEC = nativeCodec('msgpack', 'm');

/**
 * A private push in a codec's format (see WireCodec.push). `js`: the data's JSON text, when known;
 * `data` is called only when a codec needs the value.
 */
export function encodePush(c: WireCodec, channel: string, event: string, data: () => unknown, js?: string): Encoded {
  if (js !== undefined) {
    if (c.pushJson) return c.pushJson(channel, event, js);
    if (!c.push) return c.pub(new EncodedPublication(channel, event, 0, new JsonData(js)));
  }
  return c.push ? c.push(channel, event, data()) : c.pub({ channel, event, data: data(), offset: 0 });
}

/** A kick in a codec's format (see WireCodec.kicked). */
export function encodeKicked(c: WireCodec, channel: string, reason: string): Encoded {
  return c.kicked ? c.kicked(channel, reason) : encodePush(c, channel, 'kicked', () => ({ reason }));
}
