/**
 * Engine.IO v4 / Socket.IO v5 codecs, checked against the official parsers as the peer:
 * what they encode we must decode identically, what we encode they must accept, and for the
 * JSON parser our bytes must equal theirs.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as refEio from 'engine.io-parser';
import { Encoder as RefEncoder, Decoder as RefDecoder } from 'socket.io-parser';
import { pack as mpPack, unpack as mpUnpack, Packr } from 'msgpackr';
import {
  EioError,
  decodeEioPacket,
  decodeEioPayload,
  encodeEioPacketText,
  encodeEioPacketWs,
  encodeEioPayload,
  openPacketData,
  type EioPacket,
} from '../src/protocol/engineio.js';
import {
  SioDecoder,
  SioError,
  SioType,
  decodeSioMsgpack,
  encodeSio,
  encodeSioMsgpack,
  type SioPacket,
} from '../src/protocol/socketio.js';

// ------------------------------------------------------------------------------------------------
// helpers

/** Comparable form: binaries as hex (Buffer vs Uint8Array vs ArrayBuffer must not matter), dates as ISO. */
function norm(v: unknown): unknown {
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString('hex') };
  if (ArrayBuffer.isView(v)) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') };
  if (v instanceof Date) return { $date: v.toISOString() };
  if (Array.isArray(v)) return v.map(norm);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) out[k] = norm((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

function refEncodeSio(p: SioPacket): Array<string | Uint8Array> {
  return new RefEncoder().encode(p as never) as Array<string | Uint8Array>;
}

function refDecodeSio(parts: Array<string | Uint8Array>): SioPacket[] {
  const d = new RefDecoder();
  const out: SioPacket[] = [];
  d.on('decoded', (p: SioPacket) => out.push(p));
  for (const x of parts) d.add(x as never);
  return out;
}

function ourDecodeSio(parts: Array<string | Uint8Array>, dec = new SioDecoder()): SioPacket[] {
  const out: SioPacket[] = [];
  parts.forEach((x, i) => {
    const r = dec.add(x);
    if (i < parts.length - 1) {
      if (r !== null) throw new Error(`packet completed early at part ${i}`);
    } else if (r !== null) out.push(r);
  });
  return out;
}

function refEncodePacket(p: EioPacket, supportsBinary: boolean): string | Uint8Array {
  let out: string | Uint8Array | undefined;
  refEio.encodePacket(p as never, supportsBinary, (x: string | Uint8Array) => (out = x));
  return out!;
}

function refEncodePayload(ps: EioPacket[]): string {
  let out: string | undefined;
  refEio.encodePayload(ps as never, (x: string) => (out = x));
  return out!;
}

function throwsCode(tt: Test, fn: () => unknown, cls: typeof EioError | typeof SioError, code: string, what: string) {
  try {
    fn();
    tt.fail(`${what}: expected ${code}, nothing thrown`);
  } catch (e) {
    tt.ok(e instanceof cls, `${what}: is a ${cls.name} (got ${(e as Error)?.name}: ${(e as Error)?.message})`);
    tt.equal((e as { code?: string }).code, code, `${what}: code ${code}`);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

// Tiny seeded PRNG so the generated corpus is the same on every run.
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

// ------------------------------------------------------------------------------------------------
// Engine.IO

const eioSamples: EioPacket[] = [
  { type: 'open', data: openPacketData({ sid: 'abc', upgrades: ['websocket'], pingInterval: 25000, pingTimeout: 20000, maxPayload: 1e6 }) },
  { type: 'close' },
  { type: 'ping' },
  { type: 'ping', data: 'probe' },
  { type: 'pong', data: 'probe' },
  { type: 'message', data: 'hello' },
  { type: 'message', data: '' },
  { type: 'message', data: '€€€ 😀 ünïcödé' },
  { type: 'message', data: '2["hello",1]' },
  { type: 'message', data: Buffer.from([1, 2, 3, 4]) },
  { type: 'message', data: new Uint8Array([0, 255, 128]) },
  { type: 'message', data: new Uint8Array(0) },
  { type: 'message', data: Buffer.alloc(1000, 0xab) },
  { type: 'upgrade' },
  { type: 'noop' },
];

t.test('engine.io: packet encoding is byte-identical to engine.io-parser', async (tt) => {
  for (const p of eioSamples) {
    const label = `${p.type} ${typeof p.data === 'string' ? JSON.stringify(p.data.slice(0, 20)) : p.data ? 'binary' : '-'}`;
    tt.equal(encodeEioPacketText(p), refEncodePacket(p, false), `text: ${label}`);
    const ws = encodeEioPacketWs(p);
    const ref = refEncodePacket(p, true);
    if (typeof ref === 'string') tt.equal(ws, ref, `ws: ${label}`);
    else {
      tt.ok(ws instanceof Uint8Array, `ws binary frame: ${label}`);
      tt.equal(hex(ws as Uint8Array), hex(ref), `ws bytes, no type byte: ${label}`);
    }
  }
  tt.equal(encodeEioPacketText({ type: 'message', data: Buffer.from([1, 2, 3, 4]) }), 'bAQIDBA==');
  tt.equal(encodeEioPacketText({ type: 'message', data: 'hello' }), '4hello');
  // A Uint8Array view into a bigger buffer must encode only its own bytes.
  const big = Buffer.from([9, 9, 1, 2, 3, 9]);
  tt.equal(encodeEioPacketText({ type: 'message', data: new Uint8Array(big.buffer, big.byteOffset + 2, 3) }), 'bAQID');
});

t.test('engine.io: decoding matches engine.io-parser', async (tt) => {
  for (const p of eioSamples) {
    const text = refEncodePacket(p, false) as string;
    tt.same(norm(decodeEioPacket(text, false)), norm(refEio.decodePacket(text, 'nodebuffer')), `text ${JSON.stringify(text.slice(0, 24))}`);
    // The same text delivered as raw UTF-8 bytes of a text frame (how uWebSockets.js hands it over).
    tt.same(norm(decodeEioPacket(Buffer.from(text, 'utf8'), false)), norm(refEio.decodePacket(text, 'nodebuffer')), 'text frame as bytes');
  }
  const frame = new Uint8Array([0x34, 0x00, 0xff]); // starts with '4', but binary opcode => raw message
  const d = decodeEioPacket(frame, true);
  tt.equal(d.type, 'message');
  tt.equal(d.data, frame, 'binary frame data is passed through as-is');
  tt.strictSame(decodeEioPacket('4', false), { type: 'message' }, 'bare type digit has no data key');
  tt.strictSame(decodeEioPacket('3probe', false), { type: 'pong', data: 'probe' });
  tt.same(norm(decodeEioPacket('b', false)), { type: 'message', data: { $bin: '' } }, "'b' alone is an empty binary");
  tt.same(norm(decodeEioPacket('bAQIDBA', false)), { type: 'message', data: { $bin: '01020304' } }, 'unpadded base64 accepted');
  tt.same(norm(decodeEioPacket('bAQID', false)), { type: 'message', data: { $bin: '010203' } }, 'no padding needed');
  tt.throws(() => decodeEioPacket('4x', true), TypeError, 'string passed as a binary frame is a caller bug');
});

t.test('engine.io: payloads', async (tt) => {
  const sets: EioPacket[][] = [
    [{ type: 'message', data: 'hello' }],
    [{ type: 'message', data: 'hello' }, { type: 'message', data: '€€€' }],
    [{ type: 'message', data: 'hello' }, { type: 'message', data: Buffer.from([1, 2, 3]) }],
    [{ type: 'ping', data: 'probe' }, { type: 'message', data: 'test' }, { type: 'close' }],
    [{ type: 'noop' }],
    [{ type: 'message', data: '' }, { type: 'message', data: '' }],
    eioSamples,
  ];
  for (const ps of sets) {
    const ours = encodeEioPayload(ps);
    tt.equal(ours, refEncodePayload(ps), `encode ${ps.length} packets`);
    tt.same(norm(decodeEioPayload(ours)), norm(refEio.decodePayload(ours, 'nodebuffer')), `decode ${ps.length} packets`);
  }
  tt.equal(encodeEioPayload([{ type: 'message', data: 'hello' }, { type: 'message', data: Buffer.from([1, 2, 3]) }]), '4hello\x1ebAQID');
  tt.same(norm(decodeEioPayload('4hello\x1e2\x1e4world')), [
    { type: 'message', data: 'hello' },
    { type: 'ping' },
    { type: 'message', data: 'world' },
  ]);
  tt.equal(encodeEioPayload([]), '', 'nothing to send encodes to nothing');
  tt.equal(decodeEioPayload('4a\x1e4b\x1e4c', 3).length, 3, 'exactly maxPackets is fine');
});

t.test('engine.io: hostile input', async (tt) => {
  const bad: Array<[string, string]> = [
    ['', 'empty packet'],
    ['7', 'type out of range'],
    ['9hello', 'type out of range'],
    ['x', 'unknown type letter'],
    [' 4hello', 'leading space'],
    ['\uFEFF4hello', 'BOM'],
    ['b!!!!', 'base64 garbage'],
    ['bAQI*', 'base64 garbage char'],
    ['bA', 'base64 length 1 mod 4 (after b) is impossible'],
    ['bAQ=A', 'padding in the middle'],
    ['bAQIDBA===', 'triple padding'],
    ['bAQ ID', 'whitespace in base64'],
    ['bAQ\nID', 'newline in base64'],
    ['bAQ-_w', 'url-safe alphabet is not standard base64'],
    ['bAQIDB=', 'padded but length not multiple of 4'],
  ];
  for (const [s, what] of bad) {
    throwsCode(tt, () => decodeEioPacket(s, false), EioError, 'eio_bad_packet', `packet ${JSON.stringify(s)} (${what})`);
  }
  throwsCode(tt, () => decodeEioPacket(new Uint8Array([0x34, 0xc3, 0x28]), false), EioError, 'eio_bad_packet', 'invalid UTF-8 in a text frame');
  throwsCode(tt, () => decodeEioPacket(new Uint8Array(0), false), EioError, 'eio_bad_packet', 'empty text frame');

  throwsCode(tt, () => decodeEioPayload(''), EioError, 'eio_bad_packet', 'empty payload');
  throwsCode(tt, () => decodeEioPayload('\x1e'), EioError, 'eio_bad_packet', 'payload of only a separator');
  throwsCode(tt, () => decodeEioPayload('4a\x1e'), EioError, 'eio_bad_packet', 'trailing separator');
  throwsCode(tt, () => decodeEioPayload('4a\x1e\x1e4b'), EioError, 'eio_bad_packet', 'empty segment');
  throwsCode(tt, () => decodeEioPayload('4a\x1ebZZ*'), EioError, 'eio_bad_packet', 'base64 garbage in a payload');
  throwsCode(tt, () => decodeEioPayload('4a\x1e4b\x1e4c\x1e4d', 3), EioError, 'eio_payload_too_large', 'more than maxPackets');
  // '\x1e' inside what the sender meant as one message splits it; the tail is read as its own packet.
  tt.same(decodeEioPayload('4a\x1e4b'), [{ type: 'message', data: 'a' }, { type: 'message', data: 'b' }], 'separator splits');
  throwsCode(tt, () => decodeEioPayload('4a\x1ezz'), EioError, 'eio_bad_packet', 'split tail that is not a packet');

  throwsCode(tt, () => encodeEioPayload([{ type: 'message', data: 'a\x1e4injected' }]), EioError, 'eio_bad_packet', 'refuse to encode a separator inside a message');
  throwsCode(tt, () => encodeEioPacketText({ type: 'ping', data: new Uint8Array([1]) }), EioError, 'eio_bad_packet', 'binary on a non-message packet');
  throwsCode(tt, () => encodeEioPacketWs({ type: 'close', data: new Uint8Array([1]) }), EioError, 'eio_bad_packet', 'binary close over ws');
  throwsCode(tt, () => encodeEioPacketText({ type: 'bogus' as never }), EioError, 'eio_bad_packet', 'unknown type on encode');
  throwsCode(tt, () => encodeEioPacketText({ type: 'toString' as never }), EioError, 'eio_bad_packet', 'prototype key as type');
});

t.test('engine.io: open packet', async (tt) => {
  const data = openPacketData({ maxPayload: 1000000, pingTimeout: 20000, pingInterval: 25000, upgrades: ['websocket'], sid: 'lv_VI97HAXpY6yYWAAAC' });
  tt.equal(data, '{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}');
  tt.equal(encodeEioPacketText({ type: 'open', data }), '0' + data);
  tt.equal(openPacketData({ sid: 's', upgrades: [], pingInterval: 1, pingTimeout: 2, maxPayload: 3 }), '{"sid":"s","upgrades":[],"pingInterval":1,"pingTimeout":2,"maxPayload":3}');
});

// ------------------------------------------------------------------------------------------------
// Socket.IO, JSON parser

t.test('socket.io: spec examples are byte-exact', async (tt) => {
  const cases: Array<[SioPacket, string]> = [
    [{ type: SioType.CONNECT, nsp: '/' }, '0'],
    [{ type: SioType.CONNECT, nsp: '/', data: { token: 'x' } }, '0{"token":"x"}'],
    [{ type: SioType.CONNECT, nsp: '/', data: { sid: 'wZX3oN0bSVIhsaknAAAI' } }, '0{"sid":"wZX3oN0bSVIhsaknAAAI"}'],
    [{ type: SioType.CONNECT, nsp: '/admin', data: { sid: 'oSO0OpakMV_3jnilAAAA' } }, '0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}'],
    [{ type: SioType.CONNECT, nsp: '/admin' }, '0/admin,'],
    [{ type: SioType.CONNECT_ERROR, nsp: '/', data: { message: 'Invalid namespace' } }, '4{"message":"Invalid namespace"}'],
    [{ type: SioType.CONNECT_ERROR, nsp: '/', data: 'Not authorized' }, '4"Not authorized"'],
    [{ type: SioType.DISCONNECT, nsp: '/' }, '1'],
    [{ type: SioType.DISCONNECT, nsp: '/admin' }, '1/admin,'],
    [{ type: SioType.EVENT, nsp: '/', data: ['hello', 1] }, '2["hello",1]'],
    [{ type: SioType.EVENT, nsp: '/chat', data: ['x'] }, '2/chat,["x"]'],
    [{ type: SioType.EVENT, nsp: '/', data: ['ack me'], id: 1 }, '21["ack me"]'],
    [{ type: SioType.EVENT, nsp: '/', data: ['foo'], id: 12 }, '212["foo"]'],
    [{ type: SioType.ACK, nsp: '/chat', data: ['bar', { ok: true }], id: 12 }, '3/chat,12["bar",{"ok":true}]'],
    [{ type: SioType.ACK, nsp: '/', data: [], id: 0 }, '30[]'],
    [{ type: SioType.EVENT, nsp: '', data: ['root'] }, '2["root"]'],
  ];
  for (const [p, wire] of cases) {
    const ours = encodeSio(p);
    tt.strictSame(ours, [wire], `encode -> ${wire}`);
    tt.strictSame(ours, refEncodeSio(p), `reference agrees on ${wire}`);
    const dec = new SioDecoder().add(wire);
    tt.same(dec, refDecodeSio([wire])[0], `decode ${wire} like the reference`);
  }

  const bin = encodeSio({ type: SioType.EVENT, nsp: '/', data: ['a', Buffer.from([1, 2, 3, 4])] });
  tt.equal(bin.length, 2);
  tt.equal(bin[0], '51-["a",{"_placeholder":true,"num":0}]');
  tt.equal(hex(bin[1] as Uint8Array), '01020304');

  const two = encodeSio({ type: SioType.EVENT, nsp: '/admin', data: ['baz', Buffer.from([1, 2]), Buffer.from([3, 4])] });
  tt.equal(two[0], '52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
  const back = encodeSio({ type: SioType.ACK, nsp: '/', id: 15, data: ['bar', Buffer.from([1, 2, 3, 4])] });
  tt.equal(back[0], '61-15["bar",{"_placeholder":true,"num":0}]');
  const nested = encodeSio({ type: SioType.ACK, nsp: '/admin', id: 1, data: [{ deep: [{ b: new Uint8Array([7]) }] }] });
  tt.equal(nested[0], '61-/admin,1[{"deep":[{"b":{"_placeholder":true,"num":0}}]}]');
});

// Packets meant to exercise the encoder's traversal: binaries in every position, toJSON, dates, unicode.
function handPicked(): SioPacket[] {
  const ab = new Uint8Array([5, 6, 7]).buffer;
  const pooled = Buffer.from('pooled buffer slice'); // a view into Node's shared pool
  return [
    { type: 2, nsp: '/', data: ['e'] },
    { type: 2, nsp: '/', data: ['e', [], {}, [[]], [{}], ''] },
    { type: 2, nsp: '/', data: ['ünïcödé 😀 \u2028\u2029', { 'kéy 🔑': 'välue' }] },
    { type: 2, nsp: '/', data: ['ctl', '\x00\x01\x1e\x1f"\\/\b\f\n\r\t'] },
    { type: 2, nsp: '/', data: [42, 'numeric event name'] },
    { type: 2, nsp: '/', data: ['nums', 0, -0, 1.5, -1e21, 1e-7, Number.MAX_SAFE_INTEGER, null, true, false] },
    { type: 2, nsp: '/', data: ['holes', [1, , 3], undefined, { u: undefined, n: null }] }, // eslint-disable-line no-sparse-arrays
    { type: 2, nsp: '/', data: ['date', new Date(0), { at: new Date(1700000000000) }] },
    { type: 2, nsp: '/', data: ['tojson', { toJSON: () => ({ replaced: true }) }] },
    { type: 2, nsp: '/', data: ['tojson-bin', { toJSON: () => ({ b: Buffer.from([1]) }) }] },
    { type: 2, nsp: '/', data: ['bin-first', Buffer.from([])] },
    { type: 2, nsp: '/', data: ['ab', ab] },
    { type: 2, nsp: '/', data: ['f32', new Float32Array([1.5, -2])] },
    { type: 2, nsp: '/', data: ['dv', new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2)] },
    { type: 2, nsp: '/', data: ['pooled', pooled.subarray(7, 13)] },
    { type: 2, nsp: '/', data: ['deep', { a: [{ b: { c: [Buffer.from([1]), { d: Buffer.from([2]) }] } }], e: Buffer.from([3]) }] },
    { type: 2, nsp: '/', data: ['many', ...Array.from({ length: 12 }, (_, i) => Buffer.from([i]))] },
    { type: 2, nsp: '/', data: ['same-buffer-twice', Buffer.from([9]), Buffer.from([9])] },
    { type: 2, nsp: '/chat', data: ['ack', Buffer.from([1])], id: 0 },
    { type: 2, nsp: '/chat', data: ['ack'], id: 2147483647 },
    { type: 2, nsp: '/chat', data: ['ack'], id: Number.MAX_SAFE_INTEGER },
    { type: 3, nsp: '/', data: [], id: 7 },
    { type: 3, nsp: '/', data: [null], id: 7 },
    { type: 3, nsp: '/ns', data: [{ file: Buffer.alloc(5000, 1) }], id: 99 },
    { type: 0, nsp: '/', data: { token: 'x', nested: { a: [1, 2] } } },
    { type: 0, nsp: '/ünï/cödé', data: {} },
    { type: 0, nsp: '/x?y=1&z=/', data: { sid: 'abc' } },
    { type: 1, nsp: '/a/b/c' },
    { type: 4, nsp: '/', data: { message: 'Not authorized', data: { reason: 'expired' } } },
    { type: 4, nsp: '/admin', data: 'plain string error' },
  ];
}

/** Random but reproducible packets: JSON-ish data with Buffers sprinkled in. */
function generated(n: number, seed: number): SioPacket[] {
  const r = prng(seed);
  const int = (k: number) => Math.floor(r() * k);
  const chars = ['a', 'Z', '0', ' ', '"', '\\', '/', ',', '-', '[', ']', '{', '}', 'é', '€', '😀', '\x1e', '\n', '\u0000', '_placeholder'];
  const str = () => Array.from({ length: int(8) }, () => chars[int(chars.length)]).join('');
  const value = (depth: number): unknown => {
    const k = int(depth > 3 ? 6 : 9);
    switch (k) {
      case 0: return str();
      case 1: return r() < 0.5 ? int(1e6) - 5e5 : (r() - 0.5) * 1e6;
      case 2: return r() < 0.5;
      case 3: return null;
      case 4: return Buffer.from(Array.from({ length: int(6) }, () => int(256)));
      case 5: return int(2 ** 40);
      case 6: return Array.from({ length: int(5) }, () => value(depth + 1));
      case 7:
      case 8: {
        const o: Record<string, unknown> = {};
        for (let i = int(5); i > 0; i--) o[str()] = value(depth + 1);
        return o;
      }
    }
    return 0;
  };
  const nsps = ['/', '/', '/chat', '/a/b', '/ünï', '/x?y=1'];
  const out: SioPacket[] = [];
  for (let i = 0; i < n; i++) {
    const nsp = nsps[int(nsps.length)]!;
    const kind = int(10);
    if (kind < 5) {
      const name = 'ev' + str();
      const p: SioPacket = { type: 2, nsp, data: [name, ...Array.from({ length: int(4) }, () => value(0))] };
      if (r() < 0.4) p.id = int(1e6);
      out.push(p);
    } else if (kind < 8) {
      out.push({ type: 3, nsp, id: int(1e9), data: Array.from({ length: int(4) }, () => value(0)) });
    } else if (kind === 8) {
      out.push(r() < 0.5 ? { type: 0, nsp } : { type: 0, nsp, data: { token: str(), n: int(100) } });
    } else {
      out.push({ type: 4, nsp, data: { message: str() } });
    }
  }
  return out;
}

t.test('socket.io: encoding equals socket.io-parser for many packets', async (tt) => {
  const all = [...handPicked(), ...generated(600, 0xc0ffee)];
  let binaries = 0;
  let mismatches = 0;
  for (const p of all) {
    const before = JSON.stringify(norm(p.data));
    const ours = encodeSio(p);
    const ref = refEncodeSio(p);
    if (ours.length > 1) binaries++;
    const same =
      ours.length === ref.length &&
      ours[0] === ref[0] &&
      ours.slice(1).every((b, i) => b instanceof Uint8Array && hex(b) === hex(asU8(ref[i + 1]!)));
    if (!same) {
      mismatches++;
      tt.fail('encoding differs', { ours: ours[0], ref: ref[0] });
    }
    if (JSON.stringify(norm(p.data)) !== before) {
      mismatches++;
      tt.fail('input data was mutated', { wire: ours[0] });
    }
  }
  tt.equal(mismatches, 0, `all ${all.length} packets byte-identical`);
  tt.ok(binaries > 100, `corpus exercises binary packets (${binaries})`);
});

function asU8(x: string | Uint8Array | ArrayBuffer | ArrayBufferView): Uint8Array {
  if (typeof x === 'string') throw new Error('expected binary');
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

t.test('socket.io: reference-encoded packets decode identically; ours decode in the reference', async (tt) => {
  const all = [...handPicked(), ...generated(600, 0xbeef)];
  let bad = 0;
  for (const p of all) {
    // Reference -> ours. Attachments are fed as Buffers, as engine.io hands them over.
    const refWire = refEncodeSio(p).map((x) => (typeof x === 'string' ? x : Buffer.from(asU8(x))));
    // The format cannot tell a user object {"_placeholder":true} from a placeholder, so the reference
    // may reject a packet it produced itself; then we must reject it too.
    let expected: SioPacket[] | 'error';
    try {
      expected = refDecodeSio(refWire);
    } catch {
      expected = 'error';
    }
    let got: SioPacket[] | 'error';
    try {
      got = ourDecodeSio(refWire);
    } catch (e) {
      if (!(e instanceof SioError)) throw e;
      got = 'error';
    }
    if (expected === 'error' || got === 'error') {
      if (expected !== got) {
        bad++;
        tt.fail('only one side rejected', { wire: refWire[0], expected, got });
      }
      continue;
    }
    if (JSON.stringify(norm(got)) !== JSON.stringify(norm(expected))) {
      bad++;
      tt.fail('decode differs from reference', { wire: refWire[0], got: norm(got), expected: norm(expected) });
    }
    // Ours -> reference.
    const ourWire = encodeSio(p).map((x) => (typeof x === 'string' ? x : Buffer.from(x)));
    const refGot = refDecodeSio(ourWire);
    if (refGot.length !== 1 || JSON.stringify(norm(refGot)) !== JSON.stringify(norm(expected))) {
      bad++;
      tt.fail('reference decodes our encoding differently', { wire: ourWire[0] });
    }
  }
  tt.equal(bad, 0, `${all.length} packets round-trip both ways`);
});

t.test('socket.io: decoded shapes', async (tt) => {
  const dec = new SioDecoder();
  tt.strictSame(dec.add('0'), { type: 0, nsp: '/' });
  tt.strictSame(dec.add('0/admin,'), { type: 0, nsp: '/admin' });
  tt.strictSame(dec.add('0/admin'), { type: 0, nsp: '/admin' }, 'namespace without trailing comma, as the reference accepts');
  tt.strictSame(dec.add('0/admin,{"token":"123"}'), { type: 0, nsp: '/admin', data: { token: '123' } });
  tt.strictSame(dec.add('2/chat,7["x",{"a":[1,{"b":null}]}]'), { type: 2, nsp: '/chat', id: 7, data: ['x', { a: [1, { b: null }] }] });
  tt.strictSame(dec.add('3/chat,12[]'), { type: 3, nsp: '/chat', id: 12, data: [] });
  tt.strictSame(dec.add('30[]'), { type: 3, nsp: '/', id: 0, data: [] }, 'ack id 0');
  tt.strictSame(dec.add('2[7,"numeric name"]'), { type: 2, nsp: '/', data: [7, 'numeric name'] });
  tt.strictSame(dec.add('4"nope"'), { type: 4, nsp: '/', data: 'nope' });
  const bracketText = '['.repeat(200) + '\\"' + '{'.repeat(200);
  tt.strictSame(dec.add('2["x",' + JSON.stringify(bracketText) + ',{"k[":"}{"}]'), {
    type: 2,
    nsp: '/',
    data: ['x', bracketText, { 'k[': '}{' }],
  }, 'brackets and escaped quotes inside strings do not count towards depth');

  const polluted = dec.add('2["x",{"__proto__":{"polluted":1}}]')!;
  tt.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
  tt.ok(Object.prototype.hasOwnProperty.call((polluted.data as unknown[])[1], '__proto__'), '__proto__ kept as an own key');

  const bdec = new SioDecoder();
  tt.equal(bdec.add('52-/up,3["file",{"_placeholder":true,"num":1},{"x":{"_placeholder":true,"num":0}}]'), null);
  tt.equal(bdec.awaitingAttachments, true);
  const a0 = Buffer.from([0xa0]);
  const a1 = new Uint8Array([0xa1]);
  tt.equal(bdec.add(a0), null);
  const full = bdec.add(a1)!;
  tt.equal(full.type, SioType.EVENT, 'BINARY_EVENT comes back as EVENT');
  tt.equal(full.nsp, '/up');
  tt.equal(full.id, 3);
  const fd = full.data as [string, Uint8Array, { x: Uint8Array }];
  tt.equal(fd[1].buffer, a1.buffer, 'placeholder 1 -> second attachment, its bytes not copied');
  tt.ok(Buffer.isBuffer(fd[1]), 'as a Buffer, though it came as a plain Uint8Array (JSON subscribers get {"type":"Buffer",…})');
  tt.equal(fd[2].x, a0, 'placeholder 0 -> first attachment');
  tt.equal(bdec.awaitingAttachments, false);
  tt.strictSame(bdec.add('2["next"]'), { type: 2, nsp: '/', data: ['next'] }, 'decoder usable after a binary packet');

  const ack = new SioDecoder().add('61-15["bar",{"_placeholder":true,"num":0}]');
  tt.equal(ack, null);

  // A placeholder-looking object in a non-binary packet is plain data.
  tt.strictSame(new SioDecoder().add('2["x",{"_placeholder":true,"num":0}]'), { type: 2, nsp: '/', data: ['x', { _placeholder: true, num: 0 }] });
});

t.test('socket.io: full stack through an engine.io polling payload', async (tt) => {
  const parts = encodeSio({ type: SioType.EVENT, nsp: '/', data: ['up', Buffer.from([1, 2, 3])], id: 4 });
  const body = encodeEioPayload([
    { type: 'message', data: '2["before"]' },
    ...parts.map((x): EioPacket => ({ type: 'message', data: x })),
  ]);
  tt.equal(body, '42["before"]\x1e451-4["up",{"_placeholder":true,"num":0}]\x1ebAQID');
  const dec = new SioDecoder();
  const got = decodeEioPayload(body).map((p) => dec.add(p.data!)).filter((x) => x !== null);
  tt.same(norm(got), [
    { type: 2, nsp: '/', data: ['before'] },
    { type: 2, nsp: '/', id: 4, data: ['up', { $bin: '010203' }] },
  ]);
});

t.test('socket.io: hostile text input', async (tt) => {
  const cases: Array<[string, string, string]> = [
    ['', 'sio_bad_packet', 'empty message'],
    ['7["x"]', 'sio_bad_type', 'type 7'],
    ['9', 'sio_bad_type', 'type 9'],
    ['x["x"]', 'sio_bad_type', 'letter type'],
    ['-1', 'sio_bad_type', 'negative type'],
    [' 2["x"]', 'sio_bad_type', 'leading space'],
    ['2', 'sio_bad_payload', 'EVENT without payload'],
    ['2[]', 'sio_bad_payload', 'EVENT with empty array'],
    ['2{"0":"x"}', 'sio_bad_payload', 'EVENT payload that is not an array'],
    ['2"x"', 'sio_bad_payload', 'EVENT string payload'],
    ['2null', 'sio_bad_payload', 'EVENT null payload'],
    ['2[{}]', 'sio_bad_payload', 'event name is an object'],
    ['2[null]', 'sio_bad_payload', 'event name null'],
    ['2["connect"]', 'sio_bad_payload', 'reserved event name'],
    ['2["disconnecting",1]', 'sio_bad_payload', 'reserved event name'],
    ['2/chat', 'sio_bad_payload', 'namespace eats everything, no payload'],
    ['3{"a":1}', 'sio_bad_payload', 'ACK payload not an array'],
    ['0[]', 'sio_bad_payload', 'CONNECT array payload'],
    ['0"x"', 'sio_bad_payload', 'CONNECT string payload'],
    ['0null', 'sio_bad_payload', 'CONNECT null payload'],
    ['1{}', 'sio_bad_payload', 'DISCONNECT with payload'],
    ['4', 'sio_bad_payload', 'CONNECT_ERROR without payload'],
    ['4[1]', 'sio_bad_payload', 'CONNECT_ERROR array'],
    ['2["hello"', 'sio_bad_json', 'truncated array'],
    ['2["hel', 'sio_bad_json', 'truncated string'],
    ['2["a\\', 'sio_bad_json', 'truncated escape'],
    ['2[1,]', 'sio_bad_json', 'trailing comma'],
    ["2['x']", 'sio_bad_json', 'single quotes'],
    ['2["x"]garbage', 'sio_bad_json', 'trailing garbage'],
    ['0/admin,abc', 'sio_bad_json', 'garbage after namespace'],
    ['3["x"]', 'sio_bad_ack_id', 'ACK without id'],
    ['01', 'sio_bad_ack_id', 'id on CONNECT'],
    ['11', 'sio_bad_ack_id', 'id on DISCONNECT'],
    ['41"x"', 'sio_bad_ack_id', 'id on CONNECT_ERROR'],
    ['212345678901234567890["x"]', 'sio_bad_ack_id', 'huge ack id'],
    ['29007199254740993["x"]', 'sio_bad_ack_id', 'ack id just above 2^53'],
    ['3/chat,99999999999999999999999[]', 'sio_bad_ack_id', 'huge ack id on ACK'],
    ['5-["a",{"_placeholder":true,"num":0}]', 'sio_bad_attachments', 'missing attachment count'],
    ['5a-["a"]', 'sio_bad_attachments', 'non-numeric attachment count'],
    ['51["a",{"_placeholder":true,"num":0}]', 'sio_bad_attachments', 'count without dash'],
    ['5', 'sio_bad_attachments', 'bare binary type'],
    ['50-["a"]', 'sio_bad_attachments', 'zero attachments'],
    ['5 1-["a"]', 'sio_bad_attachments', 'space in count'],
    ['5+1-["a"]', 'sio_bad_attachments', 'signed count'],
    ['51e0-["a"]', 'sio_bad_attachments', 'exponent count (accepted by Number())'],
    ['51.0-["a"]', 'sio_bad_attachments', 'fractional count'],
    ['5999999999999-["a"]', 'sio_bad_attachments', 'absurd count'],
    ['511-["a"]', 'sio_too_many_attachments', '11 attachments > default 10'],
    ['6100-1[]', 'sio_too_many_attachments', '100 attachments'],
    ['51-["a",{"_placeholder":true,"num":1}]', 'sio_bad_attachments', 'placeholder num out of range'],
    ['52-["a",{"_placeholder":true,"num":-1}]', 'sio_bad_attachments', 'negative placeholder num'],
    ['52-["a",{"_placeholder":true,"num":"0"}]', 'sio_bad_attachments', 'string placeholder num'],
    ['52-["a",{"_placeholder":true,"num":0.5}]', 'sio_bad_attachments', 'fractional placeholder num'],
    ['52-["a",{"_placeholder":true}]', 'sio_bad_attachments', 'placeholder without num'],
    ['52-["a",{"x":[{"_placeholder":true,"num":2}]}]', 'sio_bad_attachments', 'nested placeholder out of range'],
    ['51-["a"', 'sio_bad_json', 'binary header with truncated JSON'],
    ['51-{"a":1}', 'sio_bad_payload', 'binary event payload not an array'],
    ['2/ch\x1eat,["x"]', 'sio_bad_nsp', 'control char in namespace'],
    ['0/a\u0000b,', 'sio_bad_nsp', 'NUL in namespace'],
    ['0/' + 'n'.repeat(2000) + ',', 'sio_bad_nsp', 'namespace too long'],
  ];
  for (const [wire, code, what] of cases) {
    throwsCode(tt, () => new SioDecoder().add(wire), SioError, code, `${what}: ${JSON.stringify(wire.slice(0, 40))}`);
  }

  const deep = '2["x",' + '['.repeat(100_000) + ']'.repeat(100_000) + ']';
  throwsCode(tt, () => new SioDecoder().add(deep), SioError, 'sio_too_deep', 'deeply nested arrays');
  const deepObj = '2["x",' + '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000) + ']';
  throwsCode(tt, () => new SioDecoder().add(deepObj), SioError, 'sio_too_deep', 'deeply nested objects');
  // ["x", [[...]]]: the outer array is level 1, so n levels in total.
  const limit = (n: number) => '2["x",' + '['.repeat(n - 1) + ']'.repeat(n - 1) + ']';
  tt.ok(new SioDecoder({ maxDepth: 5 }).add(limit(5)), 'depth exactly at maxDepth is accepted');
  throwsCode(tt, () => new SioDecoder({ maxDepth: 5 }).add(limit(6)), SioError, 'sio_too_deep', 'one past maxDepth');
  tt.ok(new SioDecoder().add(limit(64)), 'default depth 64 accepted');

  throwsCode(tt, () => new SioDecoder({ maxAttachments: 2 }).add('53-["a"]'), SioError, 'sio_too_many_attachments', 'custom maxAttachments');
  tt.equal(new SioDecoder({ maxAttachments: 2 }).add('52-["a"]'), null, 'at custom maxAttachments is fine');
  tt.equal(new SioDecoder().add('510-["a"]'), null, '10 attachments at the default limit is fine');
});

t.test('socket.io: hostile binary sequencing', async (tt) => {
  throwsCode(tt, () => new SioDecoder().add(new Uint8Array([1])), SioError, 'sio_unexpected_binary', 'binary without pending attachments');

  const dec = new SioDecoder();
  tt.equal(dec.add('52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'), null);
  tt.equal(dec.add(new Uint8Array([1])), null);
  throwsCode(tt, () => dec.add('2["interleaved"]'), SioError, 'sio_unexpected_text', 'text while attachments pending');
  tt.equal(dec.awaitingAttachments, false, 'error clears the pending state');
  throwsCode(tt, () => dec.add(new Uint8Array([2])), SioError, 'sio_unexpected_binary', 'late attachment after the error');
  tt.strictSame(dec.add('2["fresh"]'), { type: 2, nsp: '/', data: ['fresh'] }, 'decoder recovers');

  const dec2 = new SioDecoder();
  dec2.add('51-["a",{"_placeholder":true,"num":0}]');
  dec2.reset();
  throwsCode(tt, () => dec2.add(new Uint8Array([1])), SioError, 'sio_unexpected_binary', 'reset() drops pending attachments');

  throwsCode(tt, () => new SioDecoder().add(42 as never), SioError, 'sio_bad_packet', 'neither string nor bytes');
});

t.test('socket.io: encoder refuses what a peer would reject', async (tt) => {
  const cases: Array<[SioPacket, string, string]> = [
    [{ type: 7, nsp: '/', data: ['x'] }, 'sio_bad_type', 'type 7'],
    [{ type: -1, nsp: '/', data: ['x'] }, 'sio_bad_type', 'type -1'],
    [{ type: 2.5, nsp: '/', data: ['x'] }, 'sio_bad_type', 'fractional type'],
    [{ type: 2, nsp: '/a,b', data: ['x'] }, 'sio_bad_nsp', 'comma in namespace'],
    [{ type: 2, nsp: 'chat', data: ['x'] }, 'sio_bad_nsp', 'namespace without slash'],
    [{ type: 2, nsp: '/a\x1eb', data: ['x'] }, 'sio_bad_nsp', 'separator in namespace'],
    [{ type: 2, nsp: 5 as never, data: ['x'] }, 'sio_bad_nsp', 'non-string namespace'],
    [{ type: 2, nsp: '/', data: ['x'], id: -1 }, 'sio_bad_ack_id', 'negative id'],
    [{ type: 2, nsp: '/', data: ['x'], id: 1.5 }, 'sio_bad_ack_id', 'fractional id'],
    [{ type: 2, nsp: '/', data: ['x'], id: 2 ** 53 }, 'sio_bad_ack_id', 'unsafe id'],
    [{ type: 2, nsp: '/', data: ['x'], id: '3' as never }, 'sio_bad_ack_id', 'string id'],
    [{ type: 3, nsp: '/', data: [] }, 'sio_bad_ack_id', 'ACK without id'],
    [{ type: 0, nsp: '/', id: 1 }, 'sio_bad_ack_id', 'id on CONNECT'],
    [{ type: 2, nsp: '/', data: 'x' }, 'sio_bad_payload', 'EVENT data not an array'],
    [{ type: 2, nsp: '/', data: [] }, 'sio_bad_payload', 'EVENT empty'],
    [{ type: 2, nsp: '/', data: ['disconnect'] }, 'sio_bad_payload', 'reserved name'],
    [{ type: 3, nsp: '/', data: { a: 1 }, id: 1 }, 'sio_bad_payload', 'ACK data not an array'],
    [{ type: 1, nsp: '/', data: {} }, 'sio_bad_payload', 'DISCONNECT with data'],
    [{ type: 0, nsp: '/', data: [] }, 'sio_bad_payload', 'CONNECT with array'],
    [{ type: 4, nsp: '/', data: 5 }, 'sio_bad_payload', 'CONNECT_ERROR number'],
    [{ type: 2, nsp: '/', data: ['x', 10n] }, 'sio_bad_payload', 'BigInt'],
  ];
  for (const [p, code, what] of cases) throwsCode(tt, () => encodeSio(p), SioError, code, what);
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  throwsCode(tt, () => encodeSio({ type: 2, nsp: '/', data: ['x', cyclic] }), SioError, 'sio_bad_payload', 'cyclic data');
  const cyclicBin: unknown[] = [Buffer.from([1])];
  cyclicBin.push(cyclicBin);
  throwsCode(tt, () => encodeSio({ type: 2, nsp: '/', data: ['x', cyclicBin] }), SioError, 'sio_bad_payload', 'cyclic data with binary');

  tt.strictSame(encodeSio({ type: SioType.BINARY_EVENT, nsp: '/', data: ['no binary here'] }), ['2["no binary here"]'], 'BINARY_EVENT without binaries is demoted');
  tt.strictSame(encodeSio({ type: SioType.BINARY_ACK, nsp: '/', id: 3, data: [] }), ['33[]'], 'BINARY_ACK without binaries is demoted');
  tt.strictSame(encodeSio({ type: 2, nsp: '/', data: ['x'], id: undefined }), ['2["x"]'], 'id undefined omitted');
  const u8 = new Uint8Array([1, 2]);
  const parts = encodeSio({ type: 2, nsp: '/', data: ['x', u8] });
  tt.equal(parts[1], u8, 'Uint8Array attachment passed through without copying');
  const asConnect = encodeSio({ type: 0, nsp: '/', data: { b: Buffer.from([1]) } });
  tt.equal(asConnect.length, 1, 'binaries are only extracted from EVENT/ACK, like the reference');
  tt.strictSame(asConnect, refEncodeSio({ type: 0, nsp: '/', data: { b: Buffer.from([1]) } }));
});

// ------------------------------------------------------------------------------------------------
// Socket.IO, msgpack parser. socket.io-msgpack-parser (notepack.io 2.x) is not installed, so the
// reference side here is msgpackr plus byte vectors written out from the notepack format.

t.test('msgpack: exact bytes', async (tt) => {
  // {type:2, nsp:'/', data:['a',1]} as fixmap / fixstr / fixarray.
  tt.equal(hex(encodeSioMsgpack({ type: 2, nsp: '/', data: ['a', 1] })), '83a47479706502a36e7370a12fa46461746192a16101');
  // {type:3, nsp:'/chat', data:[], id:300}
  tt.equal(hex(encodeSioMsgpack({ type: 3, nsp: '/chat', data: [], id: 300 })), '84a47479706503a36e7370a52f63686174a46461746190a26964cd012c');
  // CONNECT without data has no data key at all.
  tt.equal(hex(encodeSioMsgpack({ type: 0, nsp: '/' })), '82a47479706500a36e7370a12f');
  // Binaries inline as bin 8, whatever view they came in.
  tt.equal(hex(encodeSioMsgpack({ type: 2, nsp: '/', data: ['b', Buffer.from([1, 2])] })), '83a47479706502a36e7370a12fa46461746192a162c4020102');
  tt.equal(hex(encodeSioMsgpack({ type: 2, nsp: '/', data: ['b', new Uint8Array([1, 2]).buffer] })), '83a47479706502a36e7370a12fa46461746192a162c4020102');
  const f32 = new Float32Array([1]);
  tt.match(hex(encodeSioMsgpack({ type: 2, nsp: '/', data: ['b', f32] })), /92a162c4040000803f$/, 'Float32Array sent as its raw little-endian bytes');
  tt.equal(hex(encodeSioMsgpack({ type: SioType.BINARY_EVENT, nsp: '/', data: ['e'] })).slice(0, 14), '83a47479706502', 'BINARY_EVENT maps to EVENT');
  tt.equal(hex(encodeSioMsgpack({ type: SioType.BINARY_ACK, nsp: '/', data: [], id: 1 })).slice(0, 14), '84a47479706503', 'BINARY_ACK maps to ACK');
});

t.test('msgpack: round trips and msgpackr interop', async (tt) => {
  const packets: SioPacket[] = [
    { type: 0, nsp: '/' },
    { type: 0, nsp: '/admin', data: { token: 'x' } },
    { type: 0, nsp: '/', data: { sid: 'abc' } },
    { type: 1, nsp: '/admin' },
    { type: 2, nsp: '/', data: ['hello', 1, 'ünï 😀', null, true, 1.25, -7, 2 ** 40, -(2 ** 40), { a: [1, { b: 'c' }] }] },
    { type: 2, nsp: '/chat', data: ['bin', Buffer.from([1, 2, 3]), { nested: new Uint8Array([4]) }, Buffer.alloc(70000, 7)], id: 12 },
    { type: 3, nsp: '/', data: [], id: 0 },
    { type: 3, nsp: '/', data: [{ ok: true }], id: 4294967295 },
    { type: 4, nsp: '/', data: { message: 'Invalid namespace' } },
    { type: 4, nsp: '/', data: 'not authorized' },
  ];
  for (const p of packets) {
    const wire = encodeSioMsgpack(p);
    tt.same(norm(decodeSioMsgpack(wire)), norm(p), `ours -> ours: type ${p.type} ${p.nsp}`);
    tt.same(norm(mpUnpack(wire)), norm({ type: p.type, nsp: p.nsp, ...(p.data !== undefined ? { data: p.data } : {}), ...(p.id !== undefined ? { id: p.id } : {}) }), 'msgpackr reads our bytes');
    // What a client sends: socket.io-client adds an `options` key; key order differs from ours.
    const clientShaped = { type: p.type, data: p.data, options: { compress: true }, nsp: p.nsp, ...(p.id !== undefined ? { id: p.id } : {}) };
    for (const packr of [new Packr({ useRecords: false }), new Packr({ useRecords: false, variableMapSize: true })]) {
      const fromClient = decodeSioMsgpack(packr.pack(clientShaped));
      tt.same(norm(fromClient), norm(p), 'msgpackr-encoded client packet decodes');
    }
  }
  const withDate = decodeSioMsgpack(encodeSioMsgpack({ type: 2, nsp: '/', data: ['d', new Date(1700000000123)] }));
  tt.strictSame(withDate.data, ['d', '2023-11-14T22:13:20.123Z'], 'Dates are sent as ISO strings, like the JSON parser');
  const tj = decodeSioMsgpack(encodeSioMsgpack({ type: 2, nsp: '/', data: ['j', { toJSON: () => ({ b: new Uint8Array([1]).buffer }) }] }));
  tt.same(norm(tj.data), ['j', { b: { $bin: '01' } }], 'toJSON is honoured and its binaries converted');
  const input = { type: 2, nsp: '/', data: ['ab', { x: new Uint8Array([1]).buffer, y: [new Int16Array([1])] }] };
  const before = norm(input);
  encodeSioMsgpack(input);
  tt.same(norm(input), before, 'input not mutated');
  tt.ok(input.data[1] && (input.data[1] as { x: unknown }).x instanceof ArrayBuffer, 'caller still holds its ArrayBuffer');
});

/** Build a msgpack packet map by hand from pre-encoded pieces (hex). */
function mpMap(fields: Array<[string, string]>): Buffer {
  let h = (0x80 | fields.length).toString(16);
  for (const [k, v] of fields) h += (0xa0 | k.length).toString(16) + Buffer.from(k).toString('hex') + v;
  return Buffer.from(h, 'hex');
}
const mpStr = (s: string) => (0xa0 | Buffer.byteLength(s)).toString(16) + Buffer.from(s).toString('hex');
const NSP_ROOT = mpStr('/');

t.test('msgpack: notepack 2.x and timestamp formats', async (tt) => {
  const dataHex =
    '98' + // fixarray(8)
    mpStr('ev') +
    'c703000a0b0c' + // ext8 len 3 type 0: notepack's ArrayBuffer
    'd700' + '0000018bcfe56800' + // fixext8 type 0: notepack's Date, int64 ms = 1700000000000
    'd40000' + // fixext1 type 0: notepack's undefined
    'cf0000018bcfe56800' + // uint64 1700000000000
    'd3ffffff0000000000' + // int64 -2^40
    'ca3fc00000' + // float32 1.5
    'd6ff6553f100'; // timestamp32 = 1700000000 s
  const p = decodeSioMsgpack(mpMap([['type', '02'], ['nsp', NSP_ROOT], ['data', dataHex], ['options', '81' + mpStr('compress') + 'c3']]));
  const d = p.data as unknown[];
  tt.equal(d[0], 'ev');
  tt.ok(d[1] instanceof Uint8Array, 'ext type 0 is binary');
  tt.equal(hex(d[1] as Uint8Array), '0a0b0c');
  tt.ok(d[2] instanceof Date && (d[2] as Date).getTime() === 1700000000000, 'notepack Date');
  tt.equal(d[3], undefined);
  tt.equal(d.length, 8, 'undefined keeps its slot');
  tt.equal(d[4], 1700000000000, 'uint64 as number');
  tt.equal(d[5], -(2 ** 40), 'int64 as number');
  tt.equal(d[6], 1.5);
  tt.equal((d[7] as Date).getTime(), 1700000000000, 'timestamp 32');

  const ts64 = decodeSioMsgpack(mpMap([['type', '02'], ['nsp', NSP_ROOT], ['data', '92' + mpStr('t') + 'd7ff' + (((123000000 << 2) >>> 0).toString(16).padStart(8, '0')) + '6553f100']]));
  tt.equal(((ts64.data as unknown[])[1] as Date).getTime(), 1700000000123, 'timestamp 64 with nanoseconds');
  const ts96 = decodeSioMsgpack(mpMap([['type', '02'], ['nsp', NSP_ROOT], ['data', '92' + mpStr('t') + 'c70cff' + '00000000' + 'ffffffffffffffff']]));
  tt.equal(((ts96.data as unknown[])[1] as Date).getTime(), -1000, 'timestamp 96, negative seconds');
  const fromMsgpackr = decodeSioMsgpack(mpPack({ type: 2, nsp: '/', data: ['d', new Date(1700000000456)] }));
  tt.equal(((fromMsgpackr.data as unknown[])[1] as Date).getTime(), 1700000000456, 'msgpackr Date');

  const bins = decodeSioMsgpack(mpMap([['type', '02'], ['nsp', NSP_ROOT], ['data', '93' + mpStr('b') + 'c500020102' + 'c60000000103']]));
  tt.same(norm(bins.data), ['b', { $bin: '0102' }, { $bin: '03' }], 'bin 16 / bin 32');
  const src = Buffer.from(encodeSioMsgpack({ type: 2, nsp: '/', data: ['b', Buffer.from([1, 2, 3])] }));
  const decoded = (decodeSioMsgpack(src).data as unknown[])[1] as Uint8Array;
  src.fill(0);
  tt.equal(hex(decoded), '010203', 'decoded binaries are copies, not views of the input');
});

t.test('msgpack: hostile input', async (tt) => {
  const ok = (data: string, extra: Array<[string, string]> = []) => mpMap([['type', '02'], ['nsp', NSP_ROOT], ['data', data], ...extra]);
  const cases: Array<[Uint8Array, string, string]> = [
    [new Uint8Array(0), 'sio_bad_msgpack', 'empty buffer'],
    [Buffer.from('c1', 'hex'), 'sio_bad_msgpack', 'never-used byte'],
    [Buffer.concat([ok('91' + mpStr('x')), Buffer.from([0])]), 'sio_bad_msgpack', 'trailing bytes'],
    [ok('91d910616263'), 'sio_bad_msgpack', 'truncated str8'],
    [ok('91dbffffffff'), 'sio_bad_msgpack', 'str32 length beyond input'],
    [ok('91c4ff01'), 'sio_bad_msgpack', 'truncated bin'],
    [ok('ddffffffff'), 'sio_bad_msgpack', 'array32 claiming 4G elements'],
    [ok('dfffffffff'), 'sio_bad_msgpack', 'map32 claiming 4G entries'],
    [ok('92' + mpStr('x')), 'sio_bad_msgpack', 'array shorter than declared'],
    [ok('92' + mpStr('x') + 'cd01'), 'sio_bad_msgpack', 'truncated uint16'],
    [ok('92' + mpStr('x') + 'd40500'), 'sio_bad_msgpack', 'unknown fixext type'],
    [ok('92' + mpStr('x') + 'd47200'), 'sio_bad_msgpack', "msgpackr record definition ('r')"],
    [ok('92' + mpStr('x') + 'd47391'), 'sio_bad_msgpack', "msgpackr Set extension ('s')"],
    [ok('92' + mpStr('x') + 'c70165' + '00'), 'sio_bad_msgpack', "msgpackr Error extension ('e')"],
    [ok('92' + mpStr('x') + 'c7014201'), 'sio_bad_msgpack', 'msgpackr BigInt extension'],
    [ok('92' + mpStr('x') + 'd5000000'), 'sio_bad_msgpack', 'fixext2 type 0'],
    [ok('92' + mpStr('x') + 'c705ff0000000000'), 'sio_bad_msgpack', 'timestamp with bad length'],
    [ok('92' + mpStr('x') + '81' + '90' + '01'), 'sio_bad_msgpack', 'array as map key'],
    [Buffer.from('93020304', 'hex'), 'sio_bad_packet', 'top level is an array'],
    [Buffer.from(mpStr('hello'), 'hex'), 'sio_bad_packet', 'top level is a string'],
    [mpMap([['type', '05'], ['nsp', NSP_ROOT], ['data', '91' + mpStr('x')]]), 'sio_bad_type', 'BINARY_EVENT does not exist in msgpack'],
    [mpMap([['type', '07'], ['nsp', NSP_ROOT]]), 'sio_bad_type', 'type out of range'],
    [mpMap([['type', 'ff'], ['nsp', NSP_ROOT]]), 'sio_bad_type', 'negative type'],
    [mpMap([['type', mpStr('2')], ['nsp', NSP_ROOT], ['data', '91' + mpStr('x')]]), 'sio_bad_type', 'type as string'],
    [mpMap([['type', 'cb4002000000000000'], ['nsp', NSP_ROOT], ['data', '91' + mpStr('x')]]), 'sio_bad_type', 'type 2.25'],
    [mpMap([['nsp', NSP_ROOT], ['data', '91' + mpStr('x')]]), 'sio_bad_type', 'missing type'],
    [mpMap([['type', '02'], ['data', '91' + mpStr('x')]]), 'sio_bad_nsp', 'missing nsp'],
    [mpMap([['type', '02'], ['nsp', '05'], ['data', '91' + mpStr('x')]]), 'sio_bad_nsp', 'numeric nsp'],
    [mpMap([['type', '02'], ['nsp', mpStr('chat')], ['data', '91' + mpStr('x')]]), 'sio_bad_nsp', 'nsp without slash'],
    [mpMap([['type', '02'], ['nsp', mpStr('/a,b')], ['data', '91' + mpStr('x')]]), 'sio_bad_nsp', 'comma in nsp'],
    [ok(mpStr('x')), 'sio_bad_payload', 'EVENT data is a string'],
    [ok('90'), 'sio_bad_payload', 'EVENT data is empty'],
    [ok('80'), 'sio_bad_payload', 'EVENT data is a map'],
    [ok('91' + mpStr('connect')), 'sio_bad_payload', 'reserved event'],
    [mpMap([['type', '02'], ['nsp', NSP_ROOT]]), 'sio_bad_payload', 'EVENT without data'],
    [mpMap([['type', '00'], ['nsp', NSP_ROOT], ['data', '90']]), 'sio_bad_payload', 'CONNECT with array'],
    [mpMap([['type', '01'], ['nsp', NSP_ROOT], ['data', '80']]), 'sio_bad_payload', 'DISCONNECT with data'],
    [mpMap([['type', '03'], ['nsp', NSP_ROOT], ['data', '90']]), 'sio_bad_ack_id', 'ACK without id'],
    [ok('91' + mpStr('x'), [['id', 'ff']]), 'sio_bad_ack_id', 'negative id'],
    [ok('91' + mpStr('x'), [['id', 'cb3ff8000000000000']]), 'sio_bad_ack_id', 'fractional id'],
    [ok('91' + mpStr('x'), [['id', 'cf0020000000000000']]), 'sio_bad_ack_id', 'id beyond 2^53'],
    [ok('91' + mpStr('x'), [['id', mpStr('1')]]), 'sio_bad_ack_id', 'string id'],
    [ok('91' + mpStr('x'), [['id', 'c0']]), 'sio_bad_ack_id', 'null id'],
    [mpMap([['type', '00'], ['nsp', NSP_ROOT], ['id', '01']]), 'sio_bad_ack_id', 'id on CONNECT'],
    [ok('91' + '91'.repeat(100_000) + '90'), 'sio_too_deep', 'deeply nested arrays'],
    [ok('92' + mpStr('x') + '81a161'.repeat(10_000) + '01'), 'sio_too_deep', 'deeply nested maps'],
  ];
  for (const [buf, code, what] of cases) {
    throwsCode(tt, () => decodeSioMsgpack(buf), SioError, code, what);
  }
  // data = ["x", [[...]]]: the outer array is level 1, so n levels in total, as in JSON.
  const limit = (n: number) => ok('92' + mpStr('x') + '91'.repeat(n - 2) + '90');
  tt.ok(decodeSioMsgpack(limit(64)), 'default depth 64 accepted');
  throwsCode(tt, () => decodeSioMsgpack(limit(65)), SioError, 'sio_too_deep', 'one past default depth');
  tt.ok(decodeSioMsgpack(limit(5), { maxDepth: 5 }), 'custom maxDepth reached exactly');
  throwsCode(tt, () => decodeSioMsgpack(limit(6), { maxDepth: 5 }), SioError, 'sio_too_deep', 'one past custom maxDepth');

  // The length check must fire before anything is allocated for the claimed size.
  tt.throws(() => decodeSioMsgpack(ok('ddffffffff')), { code: 'sio_bad_msgpack', message: /exceeds input/ }, 'array length checked against input');
  tt.throws(() => decodeSioMsgpack(ok('dfffffffff')), { code: 'sio_bad_msgpack', message: /exceeds input/ }, 'map length checked against input');

  const float2 = mpMap([['type', 'cb4000000000000000'], ['nsp', NSP_ROOT], ['data', '91' + mpStr('x')]]);
  tt.equal(decodeSioMsgpack(float2).type, 2, 'type written as float64 2.0 is still EVENT');

  const proto = decodeSioMsgpack(ok('92' + mpStr('x') + '81' + mpStr('__proto__') + '81' + mpStr('polluted') + '01'));
  tt.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
  const obj = (proto.data as unknown[])[1] as object;
  tt.equal(Object.getPrototypeOf(obj), Object.prototype, 'object keeps its prototype');
  tt.ok(Object.prototype.hasOwnProperty.call(obj, '__proto__'), '__proto__ kept as an own key');
  const numKey = decodeSioMsgpack(ok('92' + mpStr('x') + '81' + '07' + mpStr('seven')));
  tt.strictSame(numKey.data, ['x', { 7: 'seven' }], 'numeric map keys become strings');
  const badUtf8 = decodeSioMsgpack(ok('92' + mpStr('x') + 'a2c328'));
  tt.equal((badUtf8.data as unknown[])[1], '\ufffd(', 'invalid UTF-8 is replaced, not fatal');
  throwsCode(tt, () => decodeSioMsgpack('2["x"]' as never), SioError, 'sio_bad_packet', 'text given to the msgpack decoder');
});
