/**
 * Wire codecs turn a delivery into the bytes one kind of client expects. A shard encodes each delivery
 * once per codec that has local subscribers and hands the bytes to uWS topics (tag + channel).
 */
import type { Member, Publication } from './native.js';
import { encodeFrame, messageFrame } from './native.js';

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
  user(event: string, data: unknown): Encoded;
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
    pub: (p) => encodeFrame(messageFrame(p), format),
    join: (channel, member) => encodeFrame({ op: 'join', channel, member }, format),
    leave: (channel, member) => encodeFrame({ op: 'leave', channel, member }, format),
    user: (event, data) => encodeFrame({ op: 'message', event, data }, format),
  });
}

export const JSON_CODEC = nativeCodec('json', 'j');
export const MSGPACK_CODEC = nativeCodec('msgpack', 'm');
