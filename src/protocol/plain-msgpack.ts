/**
 * msgpack decoding for bytes nobody here produced (clients, other hosts through Redis). msgpackr turns
 * extension types into live objects (Date, RegExp, Set, Map, Error, typed arrays, undefined, …) and
 * offers no per-instance way to turn that off, so every decoded value is walked and anything that is
 * not JSON-compatible (or binary) is refused. The walk also bounds nesting, which JSON-only consumers
 * downstream (JSON codecs, history, Redis) would otherwise recurse through.
 */
import { Unpackr } from 'msgpackr';
import { RtError } from '../errors.js';

/** Deeper than any honest frame nests; deep enough that the walk cannot exhaust the stack. */
export const MAX_MSGPACK_DEPTH = 64;

// copyBuffers: without it a decoded `bin` is a view of the bytes given, and uWS detaches a message's
// ArrayBuffer once its handler returns: a binary kept past that (a channel's history on the thread that
// decoded it) could no longer be read, and the history request that met it failed with `internal`.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', copyBuffers: true });
// msgpackr renames a `__proto__` map key to `__proto_` (its guard against prototype pollution), so such a
// key reached subscribers as another key than the one sent. Maps as Maps keep keys as they are: used only
// to confirm the key when the frame holds those bytes at all.
const keyKeeper = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: 'number' });
const PROTO = Buffer.from('__proto__');

/**
 * Refuses client bytes that unpackUnchecked decoded with a `__proto__` key renamed (see keyKeeper):
 * a sender must learn its key is not carried. Bytes between hosts are not checked: the server packed
 * them, and refusing them there would drop a message already accepted.
 */
export function assertNoProtoKey(bytes: Uint8Array): void {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.indexOf(PROTO) !== -1 && hasProtoKey(keyKeeper.unpack(buf))) throw new RtError('bad_frame', 'msgpack: a map key "__proto__" is not accepted');
}

function hasProtoKey(v: unknown): boolean {
  const pending = [v];
  while (pending.length > 0) {
    const x = pending.pop();
    if (x instanceof Map) {
      for (const [k, item] of x) {
        if (k === '__proto__') return true;
        pending.push(item);
      }
    } else if (Array.isArray(x)) pending.push(...(x as unknown[]));
  }
  return false;
}

function kind(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v !== 'object' || v === null) return typeof v;
  return (v as object).constructor?.name ?? Object.prototype.toString.call(v).slice(8, -1);
}

/** Throws unless `v` is null, a boolean, number, string, Buffer/Uint8Array, array or plain object of those. */
export function assertPlain(v: unknown, depth = 0): void {
  switch (typeof v) {
    case 'string':
    case 'boolean':
    case 'number':
      return;
    case 'object': {
      if (v === null) return;
      if (depth >= MAX_MSGPACK_DEPTH) throw new RtError('bad_frame', `msgpack value nests deeper than ${MAX_MSGPACK_DEPTH} levels`);
      if (Array.isArray(v)) {
        if (Object.getPrototypeOf(v) !== Array.prototype) break;
        for (const item of v) assertPlain(item, depth + 1);
        return;
      }
      // msgpack bin decodes to Buffer (a Uint8Array subclass); other typed arrays only come from extensions.
      if (v instanceof Uint8Array && (v.constructor === Buffer || v.constructor === Uint8Array)) return;
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) break;
      for (const key in v) assertPlain((v as Record<string, unknown>)[key], depth + 1);
      return;
    }
  }
  // msgpackr decodes 0xC1, the one byte msgpack never uses, to an object of its own: not an extension.
  const what = kind(v) === 'C1Type' ? 'the byte 0xC1 (never used in msgpack) is' : `${kind(v)} values (extension types) are`;
  throw new RtError('bad_frame', `msgpack: ${what} not accepted: only strings, numbers, booleans, nil, arrays, maps and binary`);
}

/** Decodes msgpack without judging the result; malformed bytes are a bad_frame RtError. Follow with assertPlain. */
export function unpackUnchecked(bytes: Uint8Array): unknown {
  try {
    // From a Buffer, so that binaries decode to Buffers (copyBuffers slices keep the input's class): JSON
    // encodes a Buffer as {"type":"Buffer","data":[…]}, as the docs promise JSON subscribers, but a bare
    // Uint8Array as {"0":…,"1":…}, and WebSocket messages arrive as ArrayBuffers.
    return unpackr.unpack(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (err) {
    // msgpackr refuses some valid msgpack it cannot turn into a JS object: say which, so the sender does
    // not hunt for corrupt bytes.
    const m = /^Unknown extension(?: type)? (-?\d+)/.exec((err as Error)?.message ?? '');
    if (m) throw new RtError('bad_frame', `msgpack: extension type ${m[1]} is not accepted: only strings, numbers, booleans, nil, arrays, maps and binary`);
    if (/^Invalid property type for record/.test((err as Error)?.message ?? '')) {
      throw new RtError('bad_frame', 'msgpack: a map key must be a string, number, boolean or nil, not a map, array or binary');
    }
    throw new RtError('bad_frame', 'binary frame is not valid msgpack');
  }
}

/**
 * The `ref` of a frame unpackUnchecked refused as a whole (an unknown extension type, a map, array or
 * binary as a map key, bytes cut short or left over), so the refusal answers the request it was for
 * instead of leaving the client to its own timeout. Reads the top-level map's pairs in order and skips
 * every value without decoding it (no recursion: a count of items still to skip, each at least a byte,
 * bounds the walk by the frame's length). Undefined when the frame is no map, or no usable ref (a
 * non-negative safe integer) comes before the bytes stop making sense.
 */
export function scanRef(b: Uint8Array): number | undefined {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  // One item's header, p moved past it: `items` it contains (a map's pairs count twice), `skip` bytes
  // of payload after the header, `num` its value when a number, `str` whether a string.
  const head = (): { items: number; skip: number; num?: number; str?: boolean } => {
    const need = (n: number) => {
      if (p + n > b.length) throw new RangeError('cut short');
    };
    need(1);
    const t = b[p++]!;
    if (t <= 0x7f) return { items: 0, skip: 0, num: t };
    if (t >= 0xe0) return { items: 0, skip: 0, num: t - 0x100 };
    if (t <= 0x8f) return { items: 2 * (t & 0x0f), skip: 0 };
    if (t <= 0x9f) return { items: t & 0x0f, skip: 0 };
    if (t <= 0xbf) return { items: 0, skip: t & 0x1f, str: true };
    const sized = (width: 1 | 2 | 4) => {
      need(width);
      const n = width === 1 ? dv.getUint8(p) : width === 2 ? dv.getUint16(p) : dv.getUint32(p);
      p += width;
      return n;
    };
    const number = (width: number, read: (at: number) => number | bigint) => {
      need(width);
      const v = Number(read(p));
      p += width;
      return { items: 0, skip: 0, num: v };
    };
    switch (t) {
      case 0xc0: case 0xc1: case 0xc2: case 0xc3: return { items: 0, skip: 0 };
      case 0xc4: return { items: 0, skip: sized(1) };
      case 0xc5: return { items: 0, skip: sized(2) };
      case 0xc6: return { items: 0, skip: sized(4) };
      case 0xc7: return { items: 0, skip: sized(1) + 1 };
      case 0xc8: return { items: 0, skip: sized(2) + 1 };
      case 0xc9: return { items: 0, skip: sized(4) + 1 };
      case 0xca: return number(4, (at) => dv.getFloat32(at));
      case 0xcb: return number(8, (at) => dv.getFloat64(at));
      case 0xcc: return number(1, (at) => dv.getUint8(at));
      case 0xcd: return number(2, (at) => dv.getUint16(at));
      case 0xce: return number(4, (at) => dv.getUint32(at));
      case 0xcf: return number(8, (at) => dv.getBigUint64(at));
      case 0xd0: return number(1, (at) => dv.getInt8(at));
      case 0xd1: return number(2, (at) => dv.getInt16(at));
      case 0xd2: return number(4, (at) => dv.getInt32(at));
      case 0xd3: return number(8, (at) => dv.getBigInt64(at));
      case 0xd4: return { items: 0, skip: 2 };
      case 0xd5: return { items: 0, skip: 3 };
      case 0xd6: return { items: 0, skip: 5 };
      case 0xd7: return { items: 0, skip: 9 };
      case 0xd8: return { items: 0, skip: 17 };
      case 0xd9: return { items: 0, skip: sized(1), str: true };
      case 0xda: return { items: 0, skip: sized(2), str: true };
      case 0xdb: return { items: 0, skip: sized(4), str: true };
      case 0xdc: return { items: sized(2), skip: 0 };
      case 0xdd: return { items: sized(4), skip: 0 };
      case 0xde: return { items: 2 * sized(2), skip: 0 };
      default: return { items: 2 * sized(4), skip: 0 };
    }
  };
  const skipItem = () => {
    for (let pending = 1; pending > 0; pending--) {
      const h = head();
      if (p + h.skip > b.length) throw new RangeError('cut short');
      p += h.skip;
      pending += h.items;
    }
  };
  const t0 = b[0];
  if (t0 === undefined || !((t0 & 0xf0) === 0x80 || t0 === 0xde || t0 === 0xdf)) return undefined;
  let ref: number | undefined;
  try {
    const pairs = head().items / 2;
    for (let pair = 0; pair < pairs; pair++) {
      const key = head();
      if (p + key.skip > b.length) break;
      const isRef = key.str === true && key.skip === 3 && b[p] === 0x72 && b[p + 1] === 0x65 && b[p + 2] === 0x66;
      p += key.skip;
      // A key that is no string (a map, array or binary msgpackr refuses) is skipped as a value is.
      for (let pending = key.items; pending > 0; pending--) skipItem();
      const at = p;
      const v = isRef ? head() : undefined;
      if (v?.num !== undefined && Number.isSafeInteger(v.num) && v.num >= 0) ref = v.num;
      else {
        p = at;
        skipItem();
      }
    }
  } catch {
    /* the bytes stop making sense here: the ref read so far, if any */
  }
  return ref;
}

/** Decodes msgpack into JSON-compatible values (plus binary); an extension type or malformed bytes are a bad_frame RtError. */
export function unpackPlain(bytes: Uint8Array): unknown {
  const v = unpackUnchecked(bytes);
  assertPlain(v);
  return v;
}

/**
 * `v` as values unpackPlain accepts, for bytes this server writes where other hosts read them (Redis):
 * `v` itself when it already is (the common case: one walk, no copy), else what a JSON client would
 * receive of it (a Date as its ISO text, undefined properties left out, a Map as `{}`), so a value an
 * actor hook produced reads back on every host as it does on one. Not JSON-representable (a BigInt, a
 * cycle, nesting past MAX_MSGPACK_DEPTH): a bad_request RtError, before anything is written.
 */
export function toPlain(v: unknown): unknown {
  try {
    assertPlain(v);
    return v;
  } catch {
    /* not plain: JSON's rules below */
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(v);
  } catch (err) {
    throw new RtError('bad_request', `the message data cannot be serialised: ${(err as Error).message}`);
  }
  const out: unknown = text === undefined ? null : JSON.parse(text);
  try {
    assertPlain(out);
  } catch (err) {
    throw new RtError('bad_request', `the message data cannot be carried: ${(err as Error).message}`);
  }
  return out;
}
