/**
 * Binary encodings of the hot mesh frames: a publication delivered to a subscriber shard (`pub!`
 * notice), a publish request to a channel's owner (`pub`) and a successful reply. Every other frame is
 * a generic msgpack map.
 *
 * A binary frame starts with 0xc1, the one byte msgpack never uses, so a consumer tells the two apart by
 * the first byte and generic frames are unchanged. Then a kind byte, a flags byte and one spare byte,
 * fixed little-endian fields, the strings as u32 length + UTF-8, and the payload (`data`, or the reply
 * value) as msgpack at the end. A publication's payload is not decoded by decodeHot: the receiver gets
 * it as a MsgpackData (or, flagged, as JSON text), decoded only if something reads it, and passed on
 * to the next ring as the same bytes (src/protocol/encoded-payload.ts). The field names of the generic map are not written or parsed at all,
 * which is most of what the binary form saves (see docs/benchmarks.md, "Hot path, issue 15").
 *
 * The binary form carries exactly the fields the types in messages.ts declare. encodeHot() falls back
 * (returns null) for anything whose fields do not have the declared types, so an unexpected shape is
 * sent as msgpack, never silently truncated. decodeHot() checks every length against the frame and
 * throws on a malformed frame, as msgpack would.
 */
import { Packr, Unpackr, REUSE_BUFFER_MODE, RESET_BUFFER_MODE, RESERVE_START_SPACE } from 'msgpackr';
import type { Envelope, PublishSource } from './messages.js';
import { JsonData, MsgpackData, EncodedPublication, EncodedPubRequest, rawJson, rawMsgpack } from '../protocol/encoded-payload.js';

/** First byte of every binary frame: "never used" in msgpack. */
export const BIN = 0xc1;

const K_PUB_NOTICE = 1;
const K_PUB_REQ = 2;
const K_REPLY = 3;

// Flags.
const F_EX = 1;
const F_AT = 2;
const F_FROM = 4;
const F_W = 8;
/** The payload is the JSON text of `data` (a msgpack string), not `data` itself: see encoded-payload.ts. */
const F_JSON = 16;

const SOURCES: readonly PublishSource[] = ['api', 'client', 'server', 'redis'];

/**
 * A payload that is not JSON text is packed by msgpackr with RESERVE_START_SPACE: the header is then
 * written into the bytes reserved in front of it, in msgpackr's own buffer, so nothing is copied twice.
 * The reserve is at most 255 bytes; such a frame whose header would be longer (channel names of
 * hundreds of bytes) goes as msgpack instead. JSON text goes through the scratch buffer, any header.
 */
const PACK_MODE = REUSE_BUFFER_MODE | RESET_BUFFER_MODE | RESERVE_START_SPACE;
const MAX_HEADER = 255;
const packr = new Packr({ useRecords: false });
/** For the sender of a publish request, packed apart from the payload (default mode: its own bytes). */
const fromPackr = new Packr({ useRecords: false });
type Packed = Buffer & { start: number; end: number };

/**
 * Where frames are assembled whose payload is JSON text or already msgpack: the header, then the bytes.
 * Grows as needed; valid until the next encodeHot() in this thread.
 */
let scratch = Buffer.alloc(4096);

/** A frame's bytes s..end of b: `hlen` bytes for the header (not yet written), then the payload. */
const body: { b: Buffer; s: number; end: number } = { b: scratch, s: 0, end: 0 };

/**
 * Room for a `hlen`-byte header followed by the payload of `o`: its JSON text `raw` as UTF-8 (a F_JSON
 * frame), or `mp`, bytes already msgpack, or else `o.data` packed (read only then: reading a carrier's
 * data decodes it). JSON text is written straight into the scratch buffer: as a msgpack string, its
 * pack and unpack cost 1.3 µs per hop against 0.4 for a UTF-8 write and read (microbenchmark, 60-byte
 * payloads). msgpackr packs in place behind a reserve of up to MAX_HEADER bytes; a payload given as
 * bytes (or a longer header) is assembled in the scratch buffer instead.
 */
function withPayload(hlen: number, mp: Uint8Array | undefined, raw: string | undefined, o: { data: unknown }): typeof body {
  if (raw !== undefined) {
    const max = hlen + raw.length * 3; // UTF-8 takes at most 3 bytes per UTF-16 unit
    if (scratch.length < max) scratch = Buffer.alloc(Math.max(max, scratch.length * 2));
    body.b = scratch;
    body.s = 0;
    body.end = hlen + scratch.write(raw, hlen, 'utf8');
    return body;
  }
  if (mp === undefined && hlen <= MAX_HEADER) {
    const p = packr.pack(o.data, PACK_MODE | hlen) as Packed;
    body.b = p;
    body.s = p.start;
    body.end = p.end;
    return body;
  }
  let bytes: Uint8Array;
  if (mp !== undefined) bytes = mp;
  else {
    const p = packr.pack(o.data, PACK_MODE) as Packed;
    bytes = p.subarray(p.start, p.end);
  }
  const end = hlen + bytes.length;
  if (scratch.length < end) scratch = Buffer.alloc(Math.max(end, scratch.length * 2));
  scratch.set(bytes, hlen);
  body.b = scratch;
  body.s = 0;
  body.end = end;
  return body;
}

/** Bytes start..end of `buf` are the frame; valid until the next encodeHot() or encodeFrame() in this thread. */
export interface HotFrame {
  buf: Buffer;
  start: number;
  end: number;
}
const result: HotFrame = { buf: Buffer.alloc(0), start: 0, end: 0 };

const f64 = new Float64Array(1);
const f64b = new Uint8Array(f64.buffer);

/** UTF-8 length of s. */
function utf8Len(s: string): number {
  const n = s.length;
  if (n > 64) return Buffer.byteLength(s, 'utf8');
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  return n;
}

function putU32(b: Buffer, pos: number, v: number): void {
  b[pos] = v;
  b[pos + 1] = v >>> 8;
  b[pos + 2] = v >>> 16;
  b[pos + 3] = v >>> 24;
}

function putF64(b: Buffer, pos: number, v: number): void {
  f64[0] = v;
  for (let i = 0; i < 8; i++) b[pos + i] = f64b[i]!;
}

/** Writes the u32 byte length `len` and the string at `pos`; returns the end. */
function putStr(b: Buffer, pos: number, s: string, len: number): number {
  putU32(b, pos, len);
  const p = pos + 4;
  if (len === s.length) for (let i = 0; i < len; i++) b[p + i] = s.charCodeAt(i);
  else b.write(s, p, len, 'utf8');
  return p + len;
}

/** Header bytes of a frame with `fixed` bytes of fields, then the channel, event and optional excluded id. */
function headerLen(fixed: number, chLen: number, evLen: number, exLen: number): number {
  return fixed + 4 + chLen + 4 + evLen + 4 + exLen;
}

/** Writes the channel, event and optional excluded id at `pos` (lengths from utf8Len; exLen -4 when absent); returns the end. */
function putNames(b: Buffer, pos: number, ch: string, chLen: number, ev: string, evLen: number, ex: string | undefined, exLen: number): number {
  const p = putStr(b, putStr(b, pos, ch, chLen), ev, evLen);
  return ex !== undefined ? putStr(b, p, ex, exLen) : p;
}

/**
 * The binary form of a hot envelope, or null when `env` is not one (or not of the declared shape, or
 * its header would be too long): the caller then sends it as msgpack.
 */
export function encodeHot(env: Envelope): HotFrame | null {
  if (env.k === 'n') {
    const n = env.b;
    if (n.t !== 'pub!') return null;
    const pub = n.pub;
    const ex = n.ex;
    const at = n.at;
    if (
      typeof pub.channel !== 'string' ||
      typeof pub.event !== 'string' ||
      typeof pub.offset !== 'number' ||
      // The sender of a presence client event (Pusher's user_id) is rare: such publications stay msgpack.
      pub.user !== undefined ||
      (ex !== undefined && typeof ex !== 'string') ||
      (at !== undefined && typeof at !== 'number')
    ) {
      return null;
    }
    const chLen = utf8Len(pub.channel);
    const evLen = utf8Len(pub.event);
    const exLen = ex !== undefined ? utf8Len(ex) : -4;
    const hlen = headerLen(24, chLen, evLen, exLen);
    const raw = rawJson(pub);
    const mp = raw === undefined ? rawMsgpack(pub) : undefined;
    if (mp === undefined && raw === undefined && hlen > MAX_HEADER) return null;
    const { b, s, end } = withPayload(hlen, mp, raw, pub);
    b[s] = BIN;
    b[s + 1] = K_PUB_NOTICE;
    b[s + 2] = (ex !== undefined ? F_EX : 0) | (at !== undefined ? F_AT : 0) | (raw !== undefined ? F_JSON : 0);
    b[s + 3] = 0;
    putU32(b, s + 4, 0);
    putF64(b, s + 8, pub.offset);
    putF64(b, s + 16, at ?? 0);
    putNames(b, s + 24, pub.channel, chLen, pub.event, evLen, ex, exLen);
    result.buf = b;
    result.start = s;
    result.end = end;
    return result;
  }
  if (env.k === 'q') {
    const q = env.b;
    if (q.t !== 'pub') return null;
    const src = SOURCES.indexOf(q.src);
    if (
      src < 0 ||
      typeof env.id !== 'number' ||
      env.id < 0 ||
      env.id > 0xffffffff ||
      typeof q.ch !== 'string' ||
      typeof q.ev !== 'string' ||
      (q.ex !== undefined && typeof q.ex !== 'string') ||
      (q.at !== undefined && typeof q.at !== 'number') ||
      (q.w !== undefined && q.w !== 1)
    ) {
      return null;
    }
    const chLen = utf8Len(q.ch);
    const evLen = utf8Len(q.ev);
    const exLen = q.ex !== undefined ? utf8Len(q.ex) : -4;
    const raw = rawJson(q);
    const mp = raw === undefined ? rawMsgpack(q) : undefined;
    // The sender goes between the names and the payload, as u32 length + msgpack, so that the payload
    // is the frame's tail and can be handed on without being decoded.
    const from = q.from === undefined ? undefined : (fromPackr.pack(q.from) as Buffer);
    const hlen = headerLen(16, chLen, evLen, exLen) + (from ? 4 + from.length : 0);
    const { b, s, end } = withPayload(hlen, mp, raw, q);
    b[s] = BIN;
    b[s + 1] = K_PUB_REQ;
    b[s + 2] = (q.ex !== undefined ? F_EX : 0) | (q.at !== undefined ? F_AT : 0) | (q.from !== undefined ? F_FROM : 0) | (q.w !== undefined ? F_W : 0) | (raw !== undefined ? F_JSON : 0);
    b[s + 3] = src;
    putU32(b, s + 4, env.id);
    putF64(b, s + 8, q.at ?? 0);
    const namesEnd = putNames(b, s + 16, q.ch, chLen, q.ev, evLen, q.ex, exLen);
    if (from) {
      putU32(b, namesEnd, from.length);
      b.set(from, namesEnd + 4);
    }
    result.buf = b;
    result.start = s;
    result.end = end;
    return result;
  }
  if (env.ok !== true || typeof env.id !== 'number' || env.id < 0 || env.id > 0xffffffff) return null;
  const b = packr.pack(env.v, PACK_MODE | 8) as Packed;
  const s = b.start;
  b[s] = BIN;
  b[s + 1] = K_REPLY;
  b[s + 2] = 0;
  b[s + 3] = 0;
  putU32(b, s + 4, env.id);
  result.buf = b;
  result.start = s;
  result.end = b.end;
  return result;
}

function bad(): never {
  throw new Error('malformed binary mesh frame');
}

/**
 * The last string decoded in each slot (channel, event), with its bytes: a hot channel's frames repeat
 * the same names, and handing back the same string also saves the receiver hashing it again.
 */
const CACHE_MAX = 64;
const cacheStr: string[] = ['', ''];
const cacheBytes: Uint8Array[] = [new Uint8Array(CACHE_MAX), new Uint8Array(CACHE_MAX)];
const cacheLen: number[] = [-1, -1];

/** The little-endian u32 at `pos` of frame bytes 0..end (as a signed int: lengths past 2^31 read negative, which callers refuse). */
function u32At(b: Buffer, pos: number, end: number): number {
  if (pos + 4 > end) bad();
  return b[pos]! | (b[pos + 1]! << 8) | (b[pos + 2]! << 16) | (b[pos + 3]! << 24);
}

/** Reads a u32-length-prefixed UTF-8 string at `pos` of frame bytes 0..end; sets `strEnd`. */
let strEnd = 0;
function readStr(b: Buffer, pos: number, end: number, slot: number): string {
  const n = u32At(b, pos, end);
  const s = pos + 4;
  const e = s + n;
  if (n < 0 || e > end) bad();
  strEnd = e;
  if (slot >= 0 && n <= CACHE_MAX) {
    const cb = cacheBytes[slot]!;
    if (cacheLen[slot] === n) {
      let i = 0;
      while (i < n && cb[i] === b[s + i]) i++;
      if (i === n) return cacheStr[slot]!;
    }
    const str = b.toString('utf8', s, e);
    for (let i = 0; i < n; i++) cb[i] = b[s + i]!;
    cacheLen[slot] = n;
    cacheStr[slot] = str;
    return str;
  }
  return b.toString('utf8', s, e);
}

let view: ArrayBufferLike | null = null;
let view64: Float64Array<ArrayBufferLike> = new Float64Array(0);
let view32: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
/** Float64/Uint32 views of a frame buffer (its bytes start at offset 0 of its ArrayBuffer). */
function views(b: Buffer): void {
  if (b.buffer !== view) {
    if (b.byteOffset !== 0) bad();
    const ab = b.buffer;
    view = ab;
    view64 = new Float64Array(ab, 0, ab.byteLength >> 3);
    view32 = new Uint32Array(ab, 0, ab.byteLength >> 2);
  }
}

const range = { start: 0, end: 0 };

/** The names read by readNames (module scratch, like strEnd: decoding is synchronous). */
const names: { ch: string; ev: string; ex: string | undefined } = { ch: '', ev: '', ex: undefined };

/** Reads the channel, event and optional excluded id from `pos` into `names`; returns where they end. */
function readNames(b: Buffer, pos: number, end: number, flags: number): number {
  names.ch = readStr(b, pos, end, 0);
  names.ev = readStr(b, strEnd, end, 1);
  names.ex = (flags & F_EX) !== 0 ? readStr(b, strEnd, end, -1) : undefined;
  return strEnd;
}

/** Decodes the msgpack value at bytes pos..end (non-empty). */
function unpackAt(b: Buffer, pos: number, end: number, unpackr: Unpackr): unknown {
  if (pos >= end) bad();
  range.start = pos;
  range.end = end;
  return unpackr.unpack(b, range);
}

/** Bytes a JSON text can start with ({ [ " - digit t f n) and end with (} ] " digit e l). */
const JSON_FIRST = new Uint8Array(256);
const JSON_LAST = new Uint8Array(256);
for (const c of '{["-0123456789tfn') JSON_FIRST[c.charCodeAt(0)] = 1;
for (const c of '}]"0123456789el') JSON_LAST[c.charCodeAt(0)] = 1;

/**
 * The payload at bytes pos..end, undecoded: the JSON text of a F_JSON frame (its UTF-8 bytes; JSON text
 * is never empty), or a copy of the msgpack bytes (the frame's buffer is reused), decoded if and when
 * someone reads it.
 */
function payloadAt(b: Buffer, pos: number, end: number, flags: number): JsonData | MsgpackData {
  if (pos >= end) bad();
  if ((flags & F_JSON) !== 0) {
    // Not parsed here (that is the point); a payload that cannot be JSON text by its first and last
    // bytes is refused as a malformed frame, as a non-string was when the text went as msgpack.
    if (!JSON_FIRST[b[pos]!] || !JSON_LAST[b[end - 1]!]) bad();
    return new JsonData(b.toString('utf8', pos, end));
  }
  // A Buffer (a copy), so that msgpack bins decode to Buffers, as they would from the frame itself.
  return new MsgpackData(Buffer.from(b.subarray(pos, end)));
}

/**
 * Decodes bytes 0..end of `b` (b[0] === BIN) into the envelope the msgpack form would have given. `b`
 * must start at offset 0 of its own ArrayBuffer (the ring consumer's decode buffers do): the float and
 * id fields are read through aligned typed-array views.
 */
export function decodeHot(b: Buffer, end: number, unpackr: Unpackr): Envelope {
  if (end < 8) bad();
  const kind = b[1];
  const flags = b[2]!;
  if (kind === K_PUB_NOTICE) {
    if (end < 24) bad();
    views(b);
    const offset = view64[1]!;
    const at = view64[2]!;
    const payload = readNames(b, 24, end, flags);
    const { ch: channel, ev: event, ex } = names;
    const pub = new EncodedPublication(channel, event, offset, payloadAt(b, payload, end, flags));
    const n: Extract<Envelope, { k: 'n' }>['b'] & { t: 'pub!' } = { t: 'pub!', pub };
    if (ex !== undefined) n.ex = ex;
    if ((flags & F_AT) !== 0) n.at = at;
    return { k: 'n', b: n };
  }
  if (kind === K_PUB_REQ) {
    if (end < 16) bad();
    const src = SOURCES[b[3]!] ?? bad();
    views(b);
    const id = view32[1]!;
    const at = view64[1]!;
    let pos = readNames(b, 16, end, flags);
    const { ch, ev, ex } = names;
    let from: unknown;
    if ((flags & F_FROM) !== 0) {
      const n = u32At(b, pos, end);
      const fromEnd = pos + 4 + n;
      if (n <= 0 || fromEnd > end) bad();
      from = unpackAt(b, pos + 4, fromEnd, unpackr);
      if (typeof from !== 'object' || from === null || Array.isArray(from)) bad();
      pos = fromEnd;
    }
    const req: Extract<Envelope, { k: 'q' }>['b'] & { t: 'pub' } = new EncodedPubRequest(ch, ev, src, payloadAt(b, pos, end, flags));
    if (from !== undefined) req.from = from as typeof req.from;
    if (ex !== undefined) req.ex = ex;
    if ((flags & F_AT) !== 0) req.at = at;
    if ((flags & F_W) !== 0) req.w = 1;
    return { k: 'q', id, b: req };
  }
  if (kind === K_REPLY) {
    views(b);
    const id = view32[1]!;
    range.start = 8;
    range.end = end;
    const v = end > 8 ? unpackr.unpack(b, range) : bad();
    return { k: 'r', id, ok: true, v };
  }
  return bad();
}
