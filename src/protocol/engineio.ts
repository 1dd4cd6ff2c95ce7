/**
 * Engine.IO protocol v4 packet and payload codec (no I/O).
 *
 * Wire format, per the Engine.IO v4 spec:
 *  - a packet is one type digit ('0'..'6') followed by optional UTF-8 text;
 *  - over WebSocket, a binary message is a raw binary frame with no type byte;
 *  - in HTTP long-polling payloads, packets are joined with the record separator '\x1e'
 *    and a binary message is written as 'b' + standard base64.
 */

export type EioPacketType = 'open' | 'close' | 'ping' | 'pong' | 'message' | 'upgrade' | 'noop';

export interface EioPacket {
  type: EioPacketType;
  data?: string | Uint8Array;
}

export class EioError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'EioError';
    this.code = code;
  }
}

/** Index = wire digit. */
const TYPES: readonly EioPacketType[] = ['open', 'close', 'ping', 'pong', 'message', 'upgrade', 'noop'];

const TYPE_DIGIT: Readonly<Record<EioPacketType, string>> = {
  open: '0',
  close: '1',
  ping: '2',
  pong: '3',
  message: '4',
  upgrade: '5',
  noop: '6',
};

export const EIO_PROTOCOL = 4;
export const EIO_SEPARATOR = '\x1e';

// fatal: a text frame that is not valid UTF-8 is a protocol violation, not something to patch with U+FFFD.
// ignoreBOM: keep a leading BOM so it fails the type-digit check instead of being silently dropped.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function digitOf(type: EioPacketType): string {
  // Own-property lookup so a prototype key such as 'toString' cannot pass as a type.
  const d = Object.prototype.hasOwnProperty.call(TYPE_DIGIT, type) ? TYPE_DIGIT[type] : undefined;
  if (d === undefined) throw new EioError('eio_bad_packet', `unknown packet type ${String(type)}`);
  return d;
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Text form of a packet: what goes in a polling payload (and what a text WebSocket frame carries).
 * A binary message becomes 'b' + base64, because polling payloads are text in v4.
 */
export function encodeEioPacketText(p: EioPacket): string {
  const digit = digitOf(p.type);
  const data = p.data;
  if (data === undefined) return digit;
  if (typeof data === 'string') return digit + data;
  if (data instanceof Uint8Array) {
    if (p.type !== 'message') throw new EioError('eio_bad_packet', `binary data on a ${p.type} packet`);
    return 'b' + toBase64(data);
  }
  throw new EioError('eio_bad_packet', 'packet data must be a string or Uint8Array');
}

/**
 * WebSocket form: a binary message is sent as-is in a binary frame (v4 dropped the leading type byte).
 * The returned Uint8Array is the caller's own buffer, not a copy.
 */
export function encodeEioPacketWs(p: EioPacket): string | Uint8Array {
  if (p.data instanceof Uint8Array) {
    if (p.type !== 'message') throw new EioError('eio_bad_packet', `binary data on a ${p.type} packet`);
    return p.data;
  }
  return encodeEioPacketText(p);
}

// 255 = not a base64 alphabet character.
const B64 = new Uint8Array(128).fill(255);
{
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < alphabet.length; i++) B64[alphabet.charCodeAt(i)] = i;
}

/**
 * Strict standard-alphabet base64. Node's own decoder skips characters it does not know, which would
 * let garbage through as silently truncated data; here anything malformed is rejected. Unpadded input
 * is accepted because some non-JS Engine.IO clients strip the padding.
 */
function decodeBase64Strict(s: string, start: number): Uint8Array {
  let end = s.length;
  const n = end - start;
  if (n === 0) return new Uint8Array(0);
  let pad = 0;
  if (s.charCodeAt(end - 1) === 61 /* = */) {
    pad = s.charCodeAt(end - 2) === 61 ? 2 : 1;
    if (n % 4 !== 0) throw new EioError('eio_bad_packet', 'invalid base64 padding');
    end -= pad;
  } else if (n % 4 === 1) {
    throw new EioError('eio_bad_packet', 'invalid base64 length');
  }
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || B64[c] === 255) throw new EioError('eio_bad_packet', 'invalid base64 character');
  }
  return Buffer.from(s.substring(start), 'base64');
}

/**
 * Decode one packet. `isBinaryFrame` is the WebSocket opcode: a binary frame is always a message.
 * Text may arrive as a string or as the frame's raw bytes (uWebSockets.js hands over an ArrayBuffer
 * for both opcodes); raw bytes must be valid UTF-8.
 *
 * A binary frame's bytes are returned as given, not copied: copy uWebSockets.js buffers before calling
 * if the packet outlives the message callback.
 */
export function decodeEioPacket(data: string | Uint8Array, isBinaryFrame: boolean): EioPacket {
  if (isBinaryFrame) {
    if (!(data instanceof Uint8Array)) throw new TypeError('a binary frame must be passed as a Uint8Array');
    return { type: 'message', data };
  }
  let str: string;
  if (typeof data === 'string') {
    str = data;
  } else {
    try {
      str = utf8.decode(data);
    } catch {
      throw new EioError('eio_bad_packet', 'text frame is not valid UTF-8');
    }
  }
  if (str.length === 0) throw new EioError('eio_bad_packet', 'empty packet');
  const c = str.charCodeAt(0);
  if (c === 98 /* b */) return { type: 'message', data: decodeBase64Strict(str, 1) };
  const t = c - 48;
  if (t < 0 || t > 6) throw new EioError('eio_bad_packet', `unknown packet type ${JSON.stringify(str[0])}`);
  // Same shape as the reference parser: no `data` key when the packet is the bare type digit.
  return str.length > 1 ? { type: TYPES[t]!, data: str.substring(1) } : { type: TYPES[t]! };
}

/**
 * Join packets into a v4 polling payload. A text packet containing '\x1e' is refused: the receiver
 * would split it, so the tail would be read as a separate (attacker-chosen) packet. Socket.IO JSON
 * never contains a raw '\x1e' because JSON.stringify escapes control characters.
 * An empty list encodes to the empty string, which is not a valid payload; callers should not send it.
 */
export function encodeEioPayload(packets: EioPacket[]): string {
  let out = '';
  for (let i = 0; i < packets.length; i++) {
    const p = packets[i]!;
    if (typeof p.data === 'string' && p.data.indexOf(EIO_SEPARATOR) !== -1) {
      throw new EioError('eio_bad_packet', 'packet data contains the payload separator');
    }
    if (i > 0) out += EIO_SEPARATOR;
    out += encodeEioPacketText(p);
  }
  return out;
}

/**
 * Split and decode a polling payload. Any malformed packet (including an empty segment, e.g. from a
 * trailing separator) rejects the whole payload: the reference server closes the session on it too.
 * `maxPackets` bounds the work a single body can cause; it is checked before each packet is decoded.
 */
export function decodeEioPayload(body: string, maxPackets = Infinity): EioPacket[] {
  if (body.length === 0) throw new EioError('eio_bad_packet', 'empty payload');
  const out: EioPacket[] = [];
  let start = 0;
  for (;;) {
    const sep = body.indexOf(EIO_SEPARATOR, start);
    if (out.length >= maxPackets) {
      throw new EioError('eio_payload_too_large', `payload has more than ${maxPackets} packets`);
    }
    out.push(decodeEioPacket(sep === -1 ? body.substring(start) : body.substring(start, sep), false));
    if (sep === -1) return out;
    start = sep + 1;
  }
}

/**
 * JSON body of the handshake `open` packet, keys in the order the reference server writes them.
 * Returned without the '0' type digit: wrap it as `{ type: 'open', data }`.
 */
export function openPacketData(o: {
  sid: string;
  upgrades: string[];
  pingInterval: number;
  pingTimeout: number;
  maxPayload: number;
}): string {
  return JSON.stringify({
    sid: o.sid,
    upgrades: o.upgrades,
    pingInterval: o.pingInterval,
    pingTimeout: o.pingTimeout,
    maxPayload: o.maxPayload,
  });
}
