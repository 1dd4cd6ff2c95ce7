/**
 * Socket.IO protocol v5 packet codecs (no I/O): the default JSON parser and the msgpack parser.
 *
 * JSON parser wire format (one Engine.IO message per string, then one per binary attachment):
 *   <type>[<attachments>-][<nsp>,][<ack id>][<JSON payload>]
 * The namespace is written only when it is not '/', and is terminated by ',' (no escaping exists,
 * so a namespace can never contain a comma).
 *
 * msgpack parser wire format (socket.io-msgpack-parser): one binary Engine.IO message holding the
 * msgpack map {type, nsp, data?, id?}; binaries stay inline, so only types 0..4 exist there.
 */

import { Packr } from 'msgpackr';
import { RESERVED_EVENTS } from '../client/reserved-events.js';
import { jsonNestsDeeper } from './json-depth.js';

export const SioType = {
  CONNECT: 0,
  DISCONNECT: 1,
  EVENT: 2,
  ACK: 3,
  CONNECT_ERROR: 4,
  BINARY_EVENT: 5,
  BINARY_ACK: 6,
} as const;
export type SioType = (typeof SioType)[keyof typeof SioType];

export const SIO_PROTOCOL = 5;

export interface SioPacket {
  type: number;
  nsp: string;
  data?: unknown;
  id?: number;
}

export class SioError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'SioError';
    this.code = code;
  }
}

export interface SioDecoderOptions {
  /** Binary attachments one packet may announce (reference default: 10). */
  maxAttachments?: number;
  /** Nesting depth of arrays/objects in a payload, the outer array counting as 1. */
  maxDepth?: number;
  /** Longest namespace accepted, in UTF-16 code units. */
  maxNamespaceLength?: number;
  /**
   * Largest packet, its binary attachments included (maxHttpBufferSize). Each Engine.IO message is
   * bounded by the transport; without this a packet could hold maxAttachments times as much.
   */
  maxPacketBytes?: number;
}

const DEFAULT_MAX_ATTACHMENTS = 10;
const DEFAULT_MAX_DEPTH = 64;
const DEFAULT_MAX_NSP = 1024;


const hasOwn = Object.prototype.hasOwnProperty;

function fail(code: string, message: string): never {
  throw new SioError(code, message);
}

// --------------------------------------------------------------------------------------------------
// Shared validation

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return Object.prototype.toString.call(v) === '[object Object]';
}

function nspProblem(nsp: string, maxLen: number): string | null {
  if (nsp.length === 0 || nsp.charCodeAt(0) !== 47 /* / */) return 'namespace must start with "/"';
  if (nsp.length > maxLen) return 'namespace too long';
  for (let i = 1; i < nsp.length; i++) {
    const c = nsp.charCodeAt(i);
    // A comma would end the namespace early in the JSON format; control characters (notably '\x1e',
    // the polling separator) have no business in a name and would corrupt polling payloads.
    if (c === 44 || c < 0x20 || c === 0x7f) return 'namespace contains a forbidden character';
  }
  return null;
}

/** Payload rules from the v5 spec, applied identically to incoming and outgoing packets. */
function payloadProblem(type: number, data: unknown): string | null {
  switch (type) {
    case SioType.CONNECT:
      return data === undefined || isPlainObject(data) ? null : 'CONNECT payload must be an object';
    case SioType.DISCONNECT:
      return data === undefined ? null : 'DISCONNECT carries no payload';
    case SioType.CONNECT_ERROR:
      return typeof data === 'string' || isPlainObject(data) ? null : 'CONNECT_ERROR payload must be a string or object';
    case SioType.EVENT:
    case SioType.BINARY_EVENT: {
      if (!Array.isArray(data) || data.length === 0) return 'EVENT payload must be a non-empty array';
      const name: unknown = data[0];
      if (typeof name === 'number') return null;
      if (typeof name !== 'string') return 'event name must be a string or number';
      return RESERVED_EVENTS.has(name) ? `reserved event name ${JSON.stringify(name)}` : null;
    }
    case SioType.ACK:
    case SioType.BINARY_ACK:
      return Array.isArray(data) ? null : 'ACK payload must be an array';
    default:
      return 'unknown packet type';
  }
}

function isAckId(id: unknown): id is number {
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0;
}

/** Ack ids only make sense on EVENT (optional) and ACK (mandatory: it names the event answered). */
function ackIdProblem(type: number, id: number | undefined): string | null {
  const isAck = type === SioType.ACK || type === SioType.BINARY_ACK;
  const isEvent = type === SioType.EVENT || type === SioType.BINARY_EVENT;
  if (id === undefined) return isAck ? 'ACK without an id' : null;
  return isAck || isEvent ? null : 'ack id on a packet type that takes none';
}

// --------------------------------------------------------------------------------------------------
// Binary detection, mirroring the reference encoder's traversal so placeholders are numbered alike:
// arrays in index order, then binary check, then toJSON() (followed once), then own enumerable keys.

type Binary = ArrayBuffer | ArrayBufferView;

function isBinary(v: object): v is Binary {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

function asBytes(b: Binary): Uint8Array {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function hasBinary(v: unknown, viaToJSON: boolean): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (hasBinary(v[i], false)) return true;
    return false;
  }
  if (isBinary(v)) return true;
  const o = v as Record<string, unknown>;
  if (!viaToJSON && typeof o.toJSON === 'function') return hasBinary((o.toJSON as () => unknown)(), true);
  for (const k of Object.keys(o)) if (hasBinary(o[k], false)) return true;
  return false;
}

/** Assigns without letting a '__proto__' key (legal in JSON and msgpack maps) replace the prototype. */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** Copy of `v` with every binary replaced by a placeholder; the caller's data is never mutated. */
function deconstruct(v: unknown, buffers: Uint8Array[], viaToJSON: boolean): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (isBinary(v)) {
    const placeholder = { _placeholder: true, num: buffers.length };
    buffers.push(asBytes(v));
    return placeholder;
  }
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = deconstruct(v[i], buffers, false);
    return out;
  }
  if (v instanceof Date) return v;
  const o = v as Record<string, unknown>;
  if (!viaToJSON && typeof o.toJSON === 'function') return deconstruct((o.toJSON as () => unknown)(), buffers, true);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) setOwn(out, k, deconstruct(o[k], buffers, false));
  return out;
}

function checkOutgoing(p: SioPacket): void {
  if (!Number.isInteger(p.type) || p.type < 0 || p.type > 6) fail('sio_bad_type', `unknown packet type ${String(p.type)}`);
  if (typeof p.nsp !== 'string') fail('sio_bad_nsp', 'namespace must be a string');
  if (p.nsp !== '' && p.nsp !== '/') {
    const why = nspProblem(p.nsp, Infinity);
    if (why) fail('sio_bad_nsp', why);
  }
  if (p.id !== undefined && p.id !== null && !isAckId(p.id)) fail('sio_bad_ack_id', 'ack id must be a non-negative safe integer');
}

/** Converts stack overflows (cyclic data) and JSON.stringify TypeErrors into a coded error. */
function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SioError) throw e;
    fail('sio_bad_payload', `payload cannot be encoded: ${(e as Error).message}`);
  }
}

// --------------------------------------------------------------------------------------------------
// JSON parser: encoder

/**
 * Encode for the default parser. The first element is the packet text; each following element is one
 * binary attachment, to be sent as its own Engine.IO binary message, in order.
 * EVENT/ACK carrying binaries anywhere in `data` are promoted to BINARY_EVENT/BINARY_ACK; a packet
 * given as BINARY_* without binaries is demoted, since "0 attachments" is rejected by real decoders.
 */
export function encodeSio(p: SioPacket): Array<string | Uint8Array> {
  checkOutgoing(p);
  const id = p.id ?? undefined;
  let type = p.type;
  if (type === SioType.BINARY_EVENT) type = SioType.EVENT;
  else if (type === SioType.BINARY_ACK) type = SioType.ACK;
  const problem = payloadProblem(type, p.data);
  if (problem) fail('sio_bad_payload', problem);
  const idProblem = ackIdProblem(type, id);
  if (idProblem) fail('sio_bad_ack_id', idProblem);

  return guarded(() => {
    let data = p.data;
    const buffers: Uint8Array[] = [];
    if ((type === SioType.EVENT || type === SioType.ACK) && hasBinary(data, false)) {
      data = deconstruct(data, buffers, false);
      type = type === SioType.EVENT ? SioType.BINARY_EVENT : SioType.BINARY_ACK;
    }
    let str = String(type);
    if (buffers.length > 0) str += buffers.length + '-';
    if (p.nsp && p.nsp !== '/') str += p.nsp + ',';
    if (id !== undefined) str += id;
    if (data !== undefined) {
      const json = JSON.stringify(data);
      if (json === undefined) fail('sio_bad_payload', 'payload is not JSON-serializable');
      str += json;
    }
    const out: Array<string | Uint8Array> = [str];
    for (const b of buffers) out.push(b);
    return out;
  });
}

// --------------------------------------------------------------------------------------------------
// JSON parser: decoder

interface Slot {
  holder: Record<string, unknown> | unknown[];
  key: string | number;
  num: number;
}

/** Finds placeholders and validates their indices up front, so a bad packet fails before its binaries arrive. */
function collectPlaceholders(v: unknown, attachments: number, slots: Slot[]): void {
  if (v === null || typeof v !== 'object') return;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const child: unknown = v[i];
      if (isPlaceholder(child)) slots.push({ holder: v, key: i, num: placeholderNum(child, attachments) });
      else collectPlaceholders(child, attachments, slots);
    }
    return;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    const child = o[k];
    if (isPlaceholder(child)) slots.push({ holder: o, key: k, num: placeholderNum(child, attachments) });
    else collectPlaceholders(child, attachments, slots);
  }
}

function isPlaceholder(v: unknown): v is { _placeholder: true; num: unknown } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && (v as { _placeholder?: unknown })._placeholder === true;
}

function placeholderNum(p: { num: unknown }, attachments: number): number {
  const n = p.num;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= attachments) {
    fail('sio_bad_attachments', `placeholder index ${JSON.stringify(n)} out of range (0..${attachments - 1})`);
  }
  return n;
}

interface Pending {
  packet: SioPacket;
  attachments: number;
  slots: Slot[];
  buffers: Uint8Array[];
  /** The header's length plus the attachments received so far. */
  bytes: number;
}

/**
 * Stateful decoder for the default parser, one per connection: a BINARY_* packet is followed by its
 * attachments as separate Engine.IO binary messages, and no other message may interleave.
 * Any error resets the state; the connection should be closed anyway.
 */
export class SioDecoder {
  private readonly maxAttachments: number;
  private readonly maxDepth: number;
  private readonly maxNsp: number;
  private readonly maxBytes: number;
  private pending: Pending | null = null;

  constructor(opts?: SioDecoderOptions) {
    this.maxAttachments = opts?.maxAttachments ?? DEFAULT_MAX_ATTACHMENTS;
    this.maxDepth = opts?.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.maxNsp = opts?.maxNamespaceLength ?? DEFAULT_MAX_NSP;
    this.maxBytes = opts?.maxPacketBytes ?? Infinity;
  }

  /** True while a BINARY_* header has been read and attachments are still expected. */
  get awaitingAttachments(): boolean {
    return this.pending !== null;
  }

  /**
   * Feed one Engine.IO message payload. Returns a complete packet, or null while waiting for binary
   * attachments. BINARY_EVENT/BINARY_ACK come back as EVENT/ACK with the binaries in place (the
   * distinction is only a wire detail). Attachments are not copied: Buffers over the given bytes.
   * @throws SioError
   */
  add(chunk: string | Uint8Array): SioPacket | null {
    try {
      if (typeof chunk === 'string') {
        if (this.pending) fail('sio_unexpected_text', 'text message while waiting for binary attachments');
        const packet = this.decodeString(chunk);
        // decodeString may have set `pending` (a BINARY_* header): its size counts toward the packet's.
        const started = this.pending as Pending | null;
        if (started) started.bytes = chunk.length;
        return packet;
      }
      if (!(chunk instanceof Uint8Array)) fail('sio_bad_packet', 'message must be a string or Uint8Array');
      const pending = this.pending;
      if (!pending) fail('sio_unexpected_binary', 'binary message without a pending binary packet');
      pending.bytes += chunk.byteLength;
      if (pending.bytes > this.maxBytes) fail('sio_too_large', `a packet and its binary attachments together pass ${this.maxBytes} bytes (maxHttpBufferSize)`);
      // As a Buffer (a view, no copy), whichever transport brought it: a plain Uint8Array would reach
      // JSON subscribers as {"0":…,"1":…} where binary is documented as {"type":"Buffer","data":[…]}.
      pending.buffers.push(chunk instanceof Buffer ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      if (pending.buffers.length < pending.attachments) return null;
      this.pending = null;
      for (const s of pending.slots) {
        (s.holder as Record<string | number, unknown>)[s.key] = pending.buffers[s.num];
      }
      return pending.packet;
    } catch (e) {
      this.pending = null;
      throw e;
    }
  }

  reset(): void {
    this.pending = null;
  }

  private decodeString(str: string): SioPacket | null {
    const len = str.length;
    if (len === 0) fail('sio_bad_packet', 'empty packet');
    let type = str.charCodeAt(0) - 48;
    if (type < 0 || type > 6) fail('sio_bad_type', `unknown packet type ${JSON.stringify(str[0])}`);
    let i = 1;

    let attachments = 0;
    if (type === SioType.BINARY_EVENT || type === SioType.BINARY_ACK) {
      const start = i;
      while (i < len && isDigit(str.charCodeAt(i))) i++;
      // More than 9 digits cannot be a sane count and would stop being an exact integer soon after.
      if (i === start || i - start > 9 || str.charCodeAt(i) !== 45 /* - */) {
        fail('sio_bad_attachments', 'malformed attachment count');
      }
      attachments = Number(str.substring(start, i));
      if (attachments < 1) fail('sio_bad_attachments', 'attachment count must be at least 1');
      if (attachments > this.maxAttachments) {
        fail('sio_too_many_attachments', `${attachments} attachments exceed the limit of ${this.maxAttachments}`);
      }
      i++; // '-'
    }

    let nsp = '/';
    if (str.charCodeAt(i) === 47 /* / */) {
      // Like the reference decoder, a namespace that runs to the end without ',' is accepted ("1/admin").
      const comma = str.indexOf(',', i);
      const end = comma === -1 ? len : comma;
      nsp = str.substring(i, end);
      const why = nspProblem(nsp, this.maxNsp);
      if (why) fail('sio_bad_nsp', why);
      i = comma === -1 ? len : comma + 1;
    }

    let id: number | undefined;
    if (i < len && isDigit(str.charCodeAt(i))) {
      const start = i;
      while (i < len && isDigit(str.charCodeAt(i))) i++;
      if (i - start > 16) fail('sio_bad_ack_id', 'ack id too large');
      id = Number(str.substring(start, i));
      if (!Number.isSafeInteger(id)) fail('sio_bad_ack_id', 'ack id too large');
    }

    let data: unknown;
    if (i < len) {
      const json = str.substring(i);
      // Before JSON.parse: a hostile payload must not build a structure that later recursive code
      // (placeholder substitution, re-encoding, structured clone to workers) overflows the stack on.
      if (jsonNestsDeeper(json, this.maxDepth)) fail('sio_too_deep', `payload nested deeper than ${this.maxDepth}`);
      try {
        data = JSON.parse(json);
      } catch {
        fail('sio_bad_json', 'payload is not valid JSON');
      }
    }

    const problem = payloadProblem(type, data);
    if (problem) fail('sio_bad_payload', problem);
    const idProblem = ackIdProblem(type, id);
    if (idProblem) fail('sio_bad_ack_id', idProblem);

    const packet: SioPacket = { type, nsp };
    if (id !== undefined) packet.id = id;
    if (data !== undefined) packet.data = data;

    if (attachments === 0) return packet;
    const slots: Slot[] = [];
    collectPlaceholders(data, attachments, slots);
    type = type === SioType.BINARY_EVENT ? SioType.EVENT : SioType.ACK;
    packet.type = type;
    this.pending = { packet, attachments, slots, buffers: [], bytes: 0 };
    return null;
  }
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

// --------------------------------------------------------------------------------------------------
// msgpack parser: encoder

// No records (msgpackr's private extension) and compact map headers, i.e. plain MessagePack that
// notepack.io, used by socket.io-msgpack-parser, reads. Instance-local options only: msgpackr's
// extension table is process-wide and other modules use msgpackr too.
const packr = new Packr({ useRecords: false, variableMapSize: true });

/**
 * Rewrites what notepack.io would misread, copying only along changed paths:
 *  - every ArrayBuffer / typed array / DataView becomes a Uint8Array, which msgpackr writes as `bin`
 *    (notepack reads `bin` back as Buffer, or ArrayBuffer in browsers);
 *  - Dates become their ISO string, as with the JSON parser: msgpackr writes the standard timestamp
 *    extension, which notepack 2.x (used by socket.io-msgpack-parser) does not understand, and
 *    notepack's own Date encoding cannot be produced without altering msgpackr's global extensions.
 */
function forMsgpack(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Uint8Array) return v;
  if (isBinary(v)) return asBytes(v);
  if (v instanceof Date) return v.toJSON();
  if (Array.isArray(v)) {
    let out: unknown[] | null = null;
    for (let i = 0; i < v.length; i++) {
      const c: unknown = v[i];
      const n = forMsgpack(c);
      if (n !== c && out === null) out = v.slice(0, i);
      if (out !== null) out.push(n);
    }
    return out ?? v;
  }
  const o = v as Record<string, unknown>;
  if (typeof o.toJSON === 'function') return forMsgpack((o.toJSON as () => unknown)());
  let out: Record<string, unknown> | null = null;
  const keys = Object.keys(o);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const c = o[k];
    const n = forMsgpack(c);
    if (n !== c && out === null) {
      out = {};
      for (let j = 0; j < i; j++) setOwn(out, keys[j]!, o[keys[j]!]);
    }
    if (out !== null) setOwn(out, k, n);
  }
  return out ?? v;
}

/** One binary Engine.IO message for socket.io-msgpack-parser peers. BINARY_* map to EVENT/ACK. */
export function encodeSioMsgpack(p: SioPacket): Uint8Array {
  checkOutgoing(p);
  let type = p.type;
  if (type === SioType.BINARY_EVENT) type = SioType.EVENT;
  else if (type === SioType.BINARY_ACK) type = SioType.ACK;
  const id = p.id ?? undefined;
  const problem = payloadProblem(type, p.data);
  if (problem) fail('sio_bad_payload', problem);
  const idProblem = ackIdProblem(type, id);
  if (idProblem) fail('sio_bad_ack_id', idProblem);
  return guarded(() => {
    const obj: Record<string, unknown> = { type, nsp: p.nsp || '/' };
    if (p.data !== undefined) obj.data = forMsgpack(p.data);
    if (id !== undefined) obj.id = id;
    return packr.pack(obj);
  });
}

// --------------------------------------------------------------------------------------------------
// msgpack parser: decoder
//
// Hand-written instead of msgpackr's unpack, because input here is hostile and msgpackr's decoder
// (a) has a process-wide extension table that turns bytes into Error, RegExp, Set, BigInt, typed
//     arrays and shared/cyclic references, and compiles record definitions into functions;
// (b) reads notepack's ext-type-0 binaries (what Node clients send for ArrayBuffer/Uint8Array) and
//     notepack's Dates as `undefined`, silently losing data.
// This reader accepts exactly what notepack and standard MessagePack produce for JSON-like data plus
// binaries and dates, with bounded depth and no allocation larger than the input.

class MsgpackReader {
  private pos = 0;
  private readonly view: DataView;
  private readonly text: Buffer;

  constructor(
    private readonly buf: Uint8Array,
    private readonly maxDepth: number,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  readTop(): unknown {
    const v = this.read(0);
    if (this.pos !== this.buf.length) fail('sio_bad_msgpack', `${this.buf.length - this.pos} trailing bytes`);
    return v;
  }

  private need(n: number): number {
    const at = this.pos;
    if (n > this.buf.length - at) fail('sio_bad_msgpack', 'truncated msgpack data');
    this.pos = at + n;
    return at;
  }

  private u8(): number {
    return this.buf[this.need(1)]!;
  }

  private read(depth: number): unknown {
    const b = this.u8();
    if (b < 0x80) return b;
    if (b < 0x90) return this.map(b & 0x0f, depth);
    if (b < 0xa0) return this.array(b & 0x0f, depth);
    if (b < 0xc0) return this.str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    const v = this.view;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(v.getUint16(this.need(2)));
      case 0xc6: return this.bin(v.getUint32(this.need(4)));
      case 0xc7: return this.ext(this.u8(), false);
      case 0xc8: return this.ext(v.getUint16(this.need(2)), false);
      case 0xc9: return this.ext(v.getUint32(this.need(4)), false);
      case 0xca: return v.getFloat32(this.need(4));
      case 0xcb: return v.getFloat64(this.need(8));
      case 0xcc: return this.u8();
      case 0xcd: return v.getUint16(this.need(2));
      case 0xce: return v.getUint32(this.need(4));
      // 64-bit integers become (possibly inexact) numbers, as notepack does: Date.now() values and
      // other integers >= 2^32 arrive this way and must not turn into BigInt.
      case 0xcf: { const at = this.need(8); return v.getUint32(at) * 0x100000000 + v.getUint32(at + 4); }
      case 0xd0: return v.getInt8(this.need(1));
      case 0xd1: return v.getInt16(this.need(2));
      case 0xd2: return v.getInt32(this.need(4));
      case 0xd3: { const at = this.need(8); return v.getInt32(at) * 0x100000000 + v.getUint32(at + 4); }
      case 0xd4: return this.ext(1, true);
      case 0xd5: return this.ext(2, true);
      case 0xd6: return this.ext(4, true);
      case 0xd7: return this.ext(8, true);
      case 0xd8: return this.ext(16, true);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(v.getUint16(this.need(2)));
      case 0xdb: return this.str(v.getUint32(this.need(4)));
      case 0xdc: return this.array(v.getUint16(this.need(2)), depth);
      case 0xdd: return this.array(v.getUint32(this.need(4)), depth);
      case 0xde: return this.map(v.getUint16(this.need(2)), depth);
      case 0xdf: return this.map(v.getUint32(this.need(4)), depth);
      default: return fail('sio_bad_msgpack', `invalid msgpack byte 0x${b.toString(16)}`);
    }
  }

  private str(n: number): string {
    const at = this.need(n);
    // Keys and event names are short and ASCII; building those directly skips the native call.
    if (n <= 16) {
      const b = this.buf;
      let out = '';
      let i = at;
      for (; i < at + n; i++) {
        const c = b[i]!;
        if (c >= 0x80) break;
        out += String.fromCharCode(c);
      }
      if (i === at + n) return out;
    }
    // Lenient UTF-8 (U+FFFD for bad sequences), as notepack and JSON-over-WebSocket peers behave.
    return this.text.toString('utf8', at, at + n);
  }

  /**
   * Copied, so the packet does not pin (or alias) the transport's receive buffer. Not `buf.slice`:
   * on a Buffer that returns a view.
   */
  private bin(n: number): Uint8Array {
    const at = this.need(n);
    return this.copy(at, n);
  }

  private copy(at: number, n: number): Uint8Array {
    // A Buffer, as the JSON parser's attachments: JSON subscribers get {"type":"Buffer","data":[…]}.
    // allocUnsafeSlow: its own memory, not a slice of Node's shared pool that it would keep alive.
    const b = Buffer.allocUnsafeSlow(n);
    b.set(this.buf.subarray(at, at + n));
    return b;
  }

  private array(n: number, depth: number): unknown[] {
    if (depth + 1 > this.maxDepth) fail('sio_too_deep', `payload nested deeper than ${this.maxDepth}`);
    // Every element takes at least one byte: a length beyond that is a lie meant to force a huge allocation.
    if (n > this.buf.length - this.pos) fail('sio_bad_msgpack', 'array length exceeds input');
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = this.read(depth + 1);
    return out;
  }

  private map(n: number, depth: number): Record<string, unknown> {
    if (depth + 1 > this.maxDepth) fail('sio_too_deep', `payload nested deeper than ${this.maxDepth}`);
    if (n * 2 > this.buf.length - this.pos) fail('sio_bad_msgpack', 'map length exceeds input');
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const k = this.read(depth + 1);
      let key: string;
      if (typeof k === 'string') key = k;
      else if (typeof k === 'number') key = String(k);
      else fail('sio_bad_msgpack', 'map key must be a string or number');
      setOwn(out, key, this.read(depth + 1));
    }
    return out;
  }

  /**
   * Extension types in use by Socket.IO msgpack peers:
   *  - type 0, fixext 1: notepack's `undefined`;
   *  - type 0, fixext 8: notepack 2.x's Date (int64 milliseconds);
   *  - type 0, ext 8/16/32: notepack 2.x's ArrayBuffer / non-Buffer typed array;
   *  - type -1: the standard timestamp (notepack 3, msgpackr, other languages).
   * Anything else is refused rather than surfaced as an opaque value.
   */
  private ext(n: number, fixed: boolean): unknown {
    const extType = this.view.getInt8(this.need(1));
    const at = this.need(n);
    const v = this.view;
    if (extType === 0) {
      if (fixed && n === 1) return undefined;
      if (fixed && n === 8) return new Date(v.getInt32(at) * 0x100000000 + v.getUint32(at + 4));
      if (!fixed) return this.copy(at, n);
    } else if (extType === -1) {
      if (n === 4) return new Date(v.getUint32(at) * 1000);
      if (n === 8) {
        const hi = v.getUint32(at);
        const nsec = hi >>> 2;
        const sec = (hi & 0x3) * 0x100000000 + v.getUint32(at + 4);
        return new Date(sec * 1000 + Math.floor(nsec / 1e6));
      }
      if (n === 12) {
        const nsec = v.getUint32(at);
        const sec = v.getInt32(at + 4) * 0x100000000 + v.getUint32(at + 8);
        return new Date(sec * 1000 + Math.floor(nsec / 1e6));
      }
    }
    return fail('sio_bad_msgpack', `unsupported msgpack extension type ${extType} (${n} bytes)`);
  }
}

/**
 * Decode one socket.io-msgpack-parser message, validated with the same rules as the JSON decoder.
 * Binaries in the result are fresh Uint8Array copies.
 * @throws SioError
 */
export function decodeSioMsgpack(buf: Uint8Array, opts?: Omit<SioDecoderOptions, 'maxAttachments'>): SioPacket {
  const maxDepth = opts?.maxDepth ?? DEFAULT_MAX_DEPTH;
  const maxNsp = opts?.maxNamespaceLength ?? DEFAULT_MAX_NSP;
  if (!(buf instanceof Uint8Array)) fail('sio_bad_packet', 'msgpack message must be binary');
  // The packet map itself is one level; its `data` may then nest up to maxDepth like in JSON.
  const raw = new MsgpackReader(buf, maxDepth + 1).readTop();
  if (!isPlainObject(raw)) fail('sio_bad_packet', 'packet must be a msgpack map');
  const type = raw.type;
  if (typeof type !== 'number' || !Number.isInteger(type) || type < 0 || type > SioType.CONNECT_ERROR) {
    fail('sio_bad_type', `invalid packet type ${String(type)}`);
  }
  const nsp = raw.nsp;
  if (typeof nsp !== 'string') fail('sio_bad_nsp', 'namespace must be a string');
  const why = nspProblem(nsp, maxNsp);
  if (why) fail('sio_bad_nsp', why);
  const data = raw.data;
  const problem = payloadProblem(type, data);
  if (problem) fail('sio_bad_payload', problem);
  const id = raw.id;
  if (id !== undefined && !isAckId(id)) fail('sio_bad_ack_id', 'ack id must be a non-negative safe integer');
  const idProblem = ackIdProblem(type, id);
  if (idProblem) fail('sio_bad_ack_id', idProblem);
  const packet: SioPacket = { type, nsp };
  if (id !== undefined) packet.id = id;
  if (data !== undefined) packet.data = data;
  return packet;
}
