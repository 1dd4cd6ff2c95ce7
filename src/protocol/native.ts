/**
 * The native protocol (docs/protocol.md): one frame is one object, JSON text or msgpack binary.
 * decodeClientFrame is the only door client bytes come through, so every shape check lives here and
 * returns an RtError the transport can answer with — never throws anything else.
 */
import { Packr } from 'msgpackr';
import { RtError, valueType } from '../errors.js';
import { assertNoProtoKey, assertPlain, scanRef, unpackUnchecked } from './plain-msgpack.js';
import { jsonNestsDeeper, MAX_JSON_DEPTH } from './json-depth.js';
import { reservedEvent } from '../client/reserved-events.js';
import { didYouMean } from '../config/suggest.js';

export type WireFormat = 'json' | 'msgpack';

export interface StreamPosition { offset: number; epoch: string }

export type ClientFrame =
  | { op: 'auth'; ref?: number; token: string }
  | { op: 'subscribe'; ref?: number; channel: string; since?: StreamPosition; data?: unknown; as?: string[] }
  | { op: 'unsubscribe'; ref?: number; channel: string }
  | { op: 'publish'; ref?: number; channel: string; event: string; data: unknown; exclude_self?: boolean }
  | { op: 'presence'; ref?: number; channel: string }
  | { op: 'history'; ref?: number; channel: string; since?: StreamPosition; limit?: number }
  | { op: 'rpc'; ref?: number; event: string; data: unknown }
  | { op: 'ping'; ref?: number };

export const CLIENT_OPS = ['auth', 'subscribe', 'unsubscribe', 'publish', 'presence', 'history', 'rpc', 'ping'] as const;

/**
 * The fields each op may carry besides `op` and `ref`. Anything else is refused rather than ignored:
 * a misspelt `exclude_self` would echo a publication to its sender, as the HTTP API's `socket_id` would.
 */
const OP_FIELDS = new Map<string, readonly string[]>([
  ['auth', ['token']],
  ['subscribe', ['channel', 'since', 'data', 'as']],
  ['unsubscribe', ['channel']],
  ['publish', ['channel', 'event', 'data', 'exclude_self']],
  ['presence', ['channel']],
  ['history', ['channel', 'since', 'limit']],
  ['rpc', ['event', 'data']],
  ['ping', []],
]);

const MAX_NAME = 200;
/** Channel names: printable ASCII without spaces or commas (commas separate names in SSE query strings). */
const CHANNEL_RE = /^[A-Za-z0-9_\-=@.:;#$%&*+!~/?|^<>[\]{}()'"`\\]+$/;
// C0 and C1 control characters and DEL: what "without control characters" means in the docs.
const EVENT_RE = /^[^\x00-\x1f\x7f-\x9f]+$/;

export function validChannelName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && name.length <= MAX_NAME && CHANNEL_RE.test(name) && !name.includes(',');
}

export function assertChannel(name: unknown): string {
  if (!validChannelName(name)) {
    throw new RtError('invalid_channel', `channel must be 1-${MAX_NAME} printable ASCII characters without spaces or commas`);
  }
  return name;
}

/**
 * Refuses a list that names a channel twice: the same message would be published (or a subscription
 * made) once per mention, where the caller asked for one on each channel. `where` prefixes the message.
 */
export function assertDistinctChannels(channels: readonly string[], where = ''): void {
  if (channels.length < 2) return;
  const seen = new Set<string>();
  for (const c of channels) {
    if (seen.has(c)) throw new RtError('bad_request', `${where}"channels" lists ${JSON.stringify(c)} twice`);
    seen.add(c);
  }
}

/** No control characters (C0, DEL, C1): the event-name rule every way a publication comes in applies. */
export function isEventName(name: string): boolean {
  return EVENT_RE.test(name);
}

export function assertEvent(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME || !EVENT_RE.test(name)) {
    throw new RtError('bad_frame', `event must be a string of 1-${MAX_NAME} characters without control characters`);
  }
  const reserved = reservedEvent(name);
  if (reserved) throw new RtError('bad_frame', `${reserved}: ${JSON.stringify(name)}`);
  return name;
}

/** Most socket ids a resume may name as its earlier connections (`as`). */
export const MAX_PREVIOUS_IDS = 16;

function previousIds(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length > MAX_PREVIOUS_IDS || !v.every((id) => typeof id === 'string' && id.length > 0 && id.length <= 64)) {
    throw new RtError('bad_frame', `as must be an array of at most ${MAX_PREVIOUS_IDS} socket ids (strings of 1-64 characters)`);
  }
  return v as string[];
}

function position(v: unknown): StreamPosition | undefined {
  if (v === undefined || v === null) return undefined;
  const p = v as { offset?: unknown; epoch?: unknown };
  if (typeof p !== 'object' || !Number.isSafeInteger(p.offset) || (p.offset as number) < 0 || typeof p.epoch !== 'string' || p.epoch.length > 64) {
    throw new RtError('bad_frame', 'since must be { "offset": <non-negative integer>, "epoch": <string> }');
  }
  return { offset: p.offset as number, epoch: p.epoch };
}

const packr = new Packr({ useRecords: false });
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** Decodes a raw client message. `bytes` may be reused by the transport after return. */
export function decodeClientFrame(bytes: ArrayBuffer | Uint8Array, isBinary: boolean): ClientFrame {
  let obj: unknown;
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (isBinary) {
    try {
      obj = unpackUnchecked(view);
    } catch (err) {
      // Refused as a whole (unknown extension type, a map key msgpackr cannot make, cut-short bytes):
      // the ref, where it can still be read, makes this the request's reply rather than a stray error.
      throw new FrameError(err as RtError, scanRef(view));
    }
    try {
      assertPlain(obj);
      assertNoProtoKey(view);
    } catch (err) {
      throw new FrameError(err as RtError, refOf(obj));
    }
  } else {
    let text: string;
    try {
      text = textDecoder.decode(view);
    } catch {
      throw new RtError('bad_frame', 'text frame is not valid UTF-8');
    }
    try {
      obj = JSON.parse(text);
    } catch {
      throw new RtError('bad_json', 'text frame is not valid JSON');
    }
    if (jsonNestsDeeper(text)) throw new FrameError(tooDeep('frame'), refOf(obj));
  }
  return validateClientFrame(obj);
}

/** JSON nested past MAX_JSON_DEPTH, refused as a msgpack value past the same depth is. */
export function tooDeep(what: string): RtError {
  return new RtError('bad_frame', `${what} nests deeper than ${MAX_JSON_DEPTH} levels of arrays and objects`);
}

/** A frame that decoded but is invalid; carries its `ref` when it had a usable one, so the reply can echo it. */
export class FrameError extends RtError {
  constructor(err: RtError, readonly ref?: number) {
    super(err.code, err.message, err.status);
  }
}

/** The frame's `ref` when it has a usable one, read without trusting anything else about the value. */
function refOf(obj: unknown): number | undefined {
  if (!obj || typeof obj !== 'object' || Object.getPrototypeOf(obj) !== Object.prototype) return undefined;
  const ref = (obj as { ref?: unknown }).ref;
  return Number.isSafeInteger(ref) && (ref as number) >= 0 ? (ref as number) : undefined;
}

export function validateClientFrame(obj: unknown): ClientFrame {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new RtError('bad_frame', 'a frame must be an object with an "op" field');
  const f = obj as Record<string, unknown>;
  const ref = f.ref;
  if (ref !== undefined && (!Number.isSafeInteger(ref) || (ref as number) < 0)) throw new RtError('bad_frame', '"ref" must be a non-negative integer');
  try {
    return validateOp(f, ref as number | undefined);
  } catch (err) {
    throw err instanceof RtError ? new FrameError(err, ref as number | undefined) : err;
  }
}

function validateOp(f: Record<string, unknown>, r: number | undefined): ClientFrame {
  const fields = typeof f.op === 'string' ? OP_FIELDS.get(f.op) : undefined;
  if (fields) {
    for (const k in f) {
      if (k === 'op' || k === 'ref' || fields.includes(k)) continue;
      const name = JSON.stringify(k.slice(0, 64));
      throw new RtError('bad_frame', `${f.op}: unknown field ${name}${didYouMean(k, fields)}; ${fields.length ? `its fields are ${fields.join(', ')}` : 'it has no fields'} (and op, ref)`);
    }
  }
  switch (f.op) {
    case 'auth':
      if (typeof f.token !== 'string' || f.token.length === 0) throw new RtError('bad_frame', 'auth needs a "token" string', 400);
      return { op: 'auth', ref: r, token: f.token };
    case 'subscribe':
      return { op: 'subscribe', ref: r, channel: assertChannel(f.channel), since: position(f.since), data: f.data, as: previousIds(f.as) };
    case 'unsubscribe':
      return { op: 'unsubscribe', ref: r, channel: assertChannel(f.channel) };
    case 'publish':
      if (!('data' in f)) throw new RtError('bad_frame', 'publish needs a "data" field');
      if (f.exclude_self !== undefined && typeof f.exclude_self !== 'boolean') throw new RtError('bad_frame', '"exclude_self" must be true or false');
      return { op: 'publish', ref: r, channel: assertChannel(f.channel), event: assertEvent(f.event), data: f.data, exclude_self: f.exclude_self === true };
    case 'presence':
      return { op: 'presence', ref: r, channel: assertChannel(f.channel) };
    case 'history': {
      const limit = f.limit;
      if (limit !== undefined && (!Number.isSafeInteger(limit) || (limit as number) < 1)) throw new RtError('bad_frame', '"limit" must be a positive integer');
      return { op: 'history', ref: r, channel: assertChannel(f.channel), since: position(f.since), limit: limit as number | undefined };
    }
    case 'rpc':
      return { op: 'rpc', ref: r, event: assertEvent(f.event), data: f.data };
    case 'ping':
      return { op: 'ping', ref: r };
    default:
      if (f.op === undefined) throw new RtError('unknown_op', `the frame has no "op"; known ops: ${CLIENT_OPS.join(', ')}`);
      // Only a string op is quoted: String() of an object whose toString is not a function throws.
      throw new RtError('unknown_op', `unknown op ${typeof f.op === 'string' ? JSON.stringify(f.op).slice(0, 64) + didYouMean(f.op, CLIENT_OPS) : `of type ${valueType(f.op)} (an op is a string)`}; known ops: ${CLIENT_OPS.join(', ')}`);
  }
}

/** Encodes a server frame in the connection's format. */
export function encodeFrame(frame: object, format: WireFormat): string | Uint8Array {
  return format === 'json' ? JSON.stringify(frame) : packr.pack(frame);
}

/** Member of a presence channel as clients see it. */
export interface Member { user_id: string; user_info?: unknown }

/** One publication in a channel's stream, as delivered and as kept in history. */
export interface Publication {
  channel: string;
  event: string;
  data: unknown;
  offset: number;
  /**
   * The sender's user id, set only on a client event (`client-…`) published by a subscriber of a
   * presence channel. Kept in history and carried across hosts like the rest of the publication; only
   * the Pusher codec shows it (Pusher's `user_id`), the other protocols' frames leave it out.
   */
  user?: string;
  /**
   * The socket the publication was not delivered to (a publish's `socket_id`, a whisper's sender). Kept
   * in history so that a replay to that socket (Socket.IO recovery) skips it as live delivery did; no
   * protocol's frame shows it.
   */
  ex?: string;
}

/**
 * The resumed publications a connection is sent: not those published excluding it (a whisper it sent,
 * a backend publish with its `socket_id`), nor those excluding a connection it had before (`as`), as
 * live delivery left them out.
 */
export function resumedFor(pubs: readonly Publication[], id: string, as: readonly string[] | undefined): readonly Publication[] {
  if (!pubs.some((p) => p.ex !== undefined && (p.ex === id || as?.includes(p.ex)))) return pubs;
  return pubs.filter((p) => p.ex === undefined || (p.ex !== id && !as?.includes(p.ex)));
}

/** A publication as the native protocol and SSE show it in `publications` (without `user`). */
export function wirePublication(p: Publication): Publication {
  return { channel: p.channel, event: p.event, data: p.data, offset: p.offset };
}

export function messageFrame(p: Publication): object {
  return { op: 'message', channel: p.channel, event: p.event, data: p.data, offset: p.offset };
}

const MP_DATA_KEY = packr.pack('data');
const MP_OFFSET_KEY = packr.pack('offset');

/**
 * packr.pack(messageFrame(p)) with the data spliced in as `raw`, its msgpack bytes (see
 * encoded-payload.ts): the first three fields packed as a map of 3 (msgpackr writes objects as map16,
 * 0xde and a u16 count), whose count then says 5, then the data and the offset.
 */
export function messageFrameMsgpack(p: Publication, raw: Uint8Array): Uint8Array {
  const head = packr.pack({ op: 'message', channel: p.channel, event: p.event });
  const offset = packr.pack(p.offset);
  const out = new Uint8Array(head.length + MP_DATA_KEY.length + raw.length + MP_OFFSET_KEY.length + offset.length);
  out.set(head, 0);
  if (head[0] === 0xde) out[2] = 5;
  else out[0] = 0x85; // a fixmap (0x83), should msgpackr ever write one
  let pos = head.length;
  out.set(MP_DATA_KEY, pos);
  out.set(raw, (pos += MP_DATA_KEY.length));
  out.set(MP_OFFSET_KEY, (pos += raw.length));
  out.set(offset, pos + MP_OFFSET_KEY.length);
  return out;
}

/** JSON.stringify(messageFrame(p)) with the data spliced in as `raw`, its JSON text (see encoded-payload.ts). */
export function messageFrameJson(p: Publication, raw: string): string {
  return `{"op":"message","channel":${JSON.stringify(p.channel)},"event":${JSON.stringify(p.event)},"data":${raw},"offset":${JSON.stringify(p.offset)}}`;
}
