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
