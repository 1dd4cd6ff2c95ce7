/**
 * Socket.IO wire formats for the gateway: packet → Engine.IO frames, and the per-namespace delivery
 * codecs the hub uses to encode each publication once per shard (registerCodec).
 *
 * A "frame" is one Engine.IO message in its WebSocket form: a string is a text packet ('4…' message,
 * '2' ping, '6' noop, …), a Uint8Array is a binary message. Polling payloads are built from frames.
 */
import { registerCodec, type Encoded, type WireCodec } from '../../protocol/codecs.js';
import { EIO_SEPARATOR } from '../../protocol/engineio.js';
import { encodeSio, encodeSioMsgpack, SioType, type SioPacket } from '../../protocol/socketio.js';
import { rawJson } from '../../protocol/encoded-payload.js';

export type Frame = string | Uint8Array;
export type SioParser = 'json' | 'msgpack';

/** Engine.IO noop: what a delivery becomes when Socket.IO clients must not see it (see eventEncoded). */
export const NOOP = '6';

/** Names a Socket.IO client refuses as fatal when they arrive as an event. */
const RESERVED = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']);

function toBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

/** Frames of one packet. JSON parser: the packet text, then one binary frame per attachment. */
export function packetFrames(p: SioPacket, parser: SioParser): Frame[] {
  if (parser === 'msgpack') return [encodeSioMsgpack(p)];
  const parts = encodeSio(p);
  parts[0] = '4' + (parts[0] as string);
  return parts;
}

function containsBinary(v: unknown, depth: number): boolean {
  if (v === null || typeof v !== 'object' || depth > 64) return false;
  if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return true;
  if (Array.isArray(v)) {
    for (const x of v) if (containsBinary(x, depth + 1)) return true;
    return false;
  }
  for (const k in v as Record<string, unknown>) if (containsBinary((v as Record<string, unknown>)[k], depth + 1)) return true;
  return false;
}

/**
 * One EVENT as a single hub `Encoded`: for the JSON parser a text frame, or — when binaries force
 * attachments — the frames joined as a polling payload ('45…' header, then 'b'+base64 parts), which
 * framesOf() splits again for WebSockets. For the msgpack parser one binary frame.
 * Never throws: a delivery Socket.IO clients cannot accept (reserved event name, unencodable data)
 * becomes a noop, because one bad publication must not break delivery to every other subscriber.
 */
export function eventEncoded(nsp: string, args: unknown[], parser: SioParser, onError: (why: string) => void): Encoded {
  const name = args[0];
  if (typeof name !== 'string' || RESERVED.has(name)) {
    onError(`event name ${JSON.stringify(name)} is reserved by Socket.IO`);
    return NOOP;
  }
  try {
    if (parser === 'msgpack') return encodeSioMsgpack({ type: SioType.EVENT, nsp, data: args });
    if (!containsBinary(args, 0)) return (nsp === '/' ? '42' : '42' + nsp + ',') + JSON.stringify(args);
    const parts = encodeSio({ type: SioType.EVENT, nsp, data: args });
    let s = '4' + (parts[0] as string);
    for (let i = 1; i < parts.length; i++) s += EIO_SEPARATOR + 'b' + toBase64(parts[i] as Uint8Array);
    return s;
  } catch (err) {
    onError((err as Error).message);
    return NOOP;
  }
}

/** Splits a codec output into frames (see eventEncoded). */
export function framesOf(e: Encoded): Frame[] {
  if (typeof e !== 'string') return [e];
  // '45' = message + BINARY_EVENT: only multi-frame payloads start that way.
  if (e.charCodeAt(1) !== 53) return [e];
  const out: Frame[] = [];
  for (const part of e.split(EIO_SEPARATOR)) out.push(part.charCodeAt(0) === 98 /* b */ ? new Uint8Array(Buffer.from(part.substring(1), 'base64')) : part);
  return out;
}

/** Hook for the hub's topic publish: undefined (one frame) on the fast path. */
function multiFrames(e: Encoded): readonly Encoded[] | undefined {
  if (typeof e !== 'string') return undefined;
  if (e === NOOP) return [NOOP];
  return e.charCodeAt(1) === 53 ? framesOf(e) : undefined;
}

/**
 * The codec of one namespace. Its uWS topics are `<tag><channel>`; the tag ends with ',' which
 * neither namespaces nor channel names can contain, so no two namespaces' topics can collide.
 */
export function namespaceCodec(nsp: string, parser: SioParser, onError: (why: string) => void, offset?: () => string): WireCodec {
  const ev = (args: unknown[]) => eventEncoded(nsp, args, parser, onError);
  return registerCodec({
    name: `socket.io${parser === 'msgpack' ? '+msgpack' : ''} ${nsp}`,
    tag: (parser === 'msgpack' ? 'S' : 's') + nsp + ',',
    binary: parser === 'msgpack',
    // With recovery, the offset is the last argument (how socket.io 4.6+ servers send it).
    pub: (p) => {
      // A payload still in JSON text is spliced (see encoded-payload.ts): JSON cannot hold binaries, so the
      // frame is the plain text EVENT eventEncoded would build.
      const raw = parser === 'json' ? rawJson(p) : undefined;
      if (raw !== undefined && !RESERVED.has(p.event)) {
        const head = `${nsp === '/' ? '42' : '42' + nsp + ','}[${JSON.stringify(p.event)},${JSON.stringify(p.channel)},${raw}`;
        return offset ? `${head},${JSON.stringify(offset())}]` : `${head}]`;
      }
      return offset ? ev([p.event, p.channel, p.data, offset()]) : ev([p.event, p.channel, p.data]);
    },
    join: (channel, m) => ev(['presence:joining', channel, m]),
    leave: (channel, m) => ev(['presence:leaving', channel, m]),
    // A last argument that is a string would be taken for an offset by the client: an offset follows it.
    user: (event, data) => ev(offset && typeof data === 'string' ? [event, data, offset()] : [event, data]),
    push: (channel, event, data) => ev(offset && typeof data === 'string' ? [event, channel, data, offset()] : [event, channel, data]),
    kicked: (channel, reason) => ev(['kicked', channel, { reason }]),
    frames: multiFrames,
  });
}

/** Polling payload text for queued frames: binaries become 'b' + base64, packets joined by '\x1e'. */
export function pollingPayload(frames: readonly Frame[]): string {
  let s = '';
  for (let i = 0; i < frames.length; i++) {
    if (i > 0) s += EIO_SEPARATOR;
    const f = frames[i]!;
    s += typeof f === 'string' ? f : 'b' + toBase64(f);
  }
  return s;
}

export function frameBytes(f: Frame): number {
  return typeof f === 'string' ? Buffer.byteLength(f) : f.byteLength;
}
