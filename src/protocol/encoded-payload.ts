import { Packr, Unpackr } from 'msgpackr';
import type { Publication } from './native.js';
import type { PublishSource, Request } from '../runtime/messages.js';

/**
 * A payload kept in the encoding it came in as, from the edge that parsed it to the wire frames that
 * carry it: the rings move those bytes, and the codecs of the same encoding splice them into their
 * frames, so a publication is not decoded and re-encoded at every thread it crosses (issue 15). JSON
 * payloads (the HTTP API, JSON clients, Pusher) are kept as their JSON text; msgpack payloads (msgpack
 * clients, Socket.IO binaries, and any value a ring frame carries) as their msgpack bytes.
 *
 * An object carrying such a payload (a publish request, a message for a channel actor, a Publication)
 * has `data` as a getter whose value is decoded on first read, and the payload under the RAW symbol.
 *
 * Once the value has been read, the encoded form is no longer used: whoever read it may have changed it
 * in place (a channel actor's onPublish, say), and the value is then what counts.
 */
export abstract class EncodedPayload {
  private value?: unknown;
  private decoded = false;

  protected abstract decode(): unknown;

  read(): unknown {
    if (!this.decoded) {
      this.value = this.decode();
      this.decoded = true;
    }
    return this.value;
  }

  /** True while nobody has read (and so could have changed) the value. */
  get untouched(): boolean {
    return !this.decoded;
  }
}

/** A `\udXXX` escape (D800-DFFF), not an escaped backslash followed by the text "udXXX". */
const LONE_SURROGATE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

export class JsonData extends EncodedPayload {
  constructor(readonly text: string) {
    super();
  }

  /** The value of a JSON-representable payload, or undefined for a value JSON cannot carry exactly. */
  static of(value: unknown): JsonData | undefined {
    const text = JSON.stringify(value);
    if (text === undefined) return undefined;
    // A lone surrogate ("\ud800" sent by a JSON client) has no UTF-8: msgpack frames (subscribers,
    // rings, history) carried its WTF-8 bytes, which strict decoders refuse and the others read as one
    // or three U+FFFD, while JSON subscribers got the surrogate. Made U+FFFD here, once, so every path
    // agrees. JSON.stringify escapes lone surrogates and nothing else in that range (a pair is written
    // as is), so well-formed text costs one search.
    return new JsonData(text.includes('\\ud') ? text.replace(LONE_SURROGATE, '$1\\ufffd') : text);
  }

  protected decode(): unknown {
    return JSON.parse(this.text);
  }

  /** The text, while nobody has read (and so could have changed) the value. */
  get pristine(): string | undefined {
    return this.untouched ? this.text : undefined;
  }
}

/*
 * The options of the rings' own Packr/Unpackr (src/runtime/ring.ts), so that bytes packed here decode
 * to what a ring frame would have given, and a codec that packs with the same options (the native
 * msgpack one) gets byte-identical frames by splicing them.
 */
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, copyBuffers: true });

export class MsgpackData extends EncodedPayload {
  /** `bytes` are this payload's own (never a view of a buffer someone reuses). */
  constructor(readonly bytes: Uint8Array) {
    super();
  }

  static of(value: unknown): MsgpackData {
    return new MsgpackData(packr.pack(value));
  }

  protected decode(): unknown {
    return unpackr.unpack(this.bytes);
  }

  /** The bytes, while nobody has read (and so could have changed) the value. */
  get pristine(): Uint8Array | undefined {
    return this.untouched ? this.bytes : undefined;
  }
}

export const RAW: unique symbol = Symbol('rt.encodedPayload');

interface Carrier {
  [RAW]?: EncodedPayload;
}

/*
 * The carriers are classes with a `data` getter: a plain object literal with accessors costs ~0.8 µs
 * to make in V8 and Object.defineProperty as much, a class instance ~20 ns (measured while writing
 * this). What a getter on the prototype does not give, toJSON() does: JSON.stringify and msgpackr
 * (for any object that is not a plain one) encode what it returns, the value included. Carriers never
 * reach user code: a channel actor with a hook that reads messages gets a plain one (actor-host.ts).
 */

/** What the carriers share: `data` read from the payload on demand, or replaced by a value. */
abstract class EncodedCarrier implements Carrier {
  [RAW]?: EncodedPayload;
  constructor(raw: EncodedPayload) {
    this[RAW] = raw;
  }
  get data(): unknown {
    return this[RAW]!.read();
  }
  set data(v: unknown) {
    // From then on `data` is a plain property and the text is not used.
    Object.defineProperty(this, 'data', { value: v, writable: true, enumerable: true, configurable: true });
    this[RAW] = undefined;
  }
}

/** A publication whose `data` is `raw`'s value, parsed on first read. */
export class EncodedPublication extends EncodedCarrier implements Publication {
  user?: string;
  ex?: string;
  constructor(
    public channel: string,
    public event: string,
    public offset: number,
    raw: EncodedPayload,
  ) {
    super(raw);
  }
  toJSON(): Publication {
    const p: Publication = { channel: this.channel, event: this.event, data: this.data, offset: this.offset };
    if (this.user !== undefined) p.user = this.user;
    if (this.ex !== undefined) p.ex = this.ex;
    return p;
  }
}

/** A message for a channel actor without message hooks, whose `data` is `raw`'s value. */
export class EncodedMessage extends EncodedCarrier {
  constructor(
    public event: string,
    raw: EncodedPayload,
  ) {
    super(raw);
  }
  toJSON(): { event: string; data: unknown } {
    return { event: this.event, data: this.data };
  }
}

type PubRequest = Extract<Request, { t: 'pub' }>;

/** A publish request whose `data` is `raw`'s value, parsed on first read. */
export class EncodedPubRequest extends EncodedCarrier implements PubRequest {
  readonly t = 'pub' as const;
  from?: PubRequest['from'];
  ex?: string;
  at?: number;
  w?: 1;
  constructor(
    public ch: string,
    public ev: string,
    public src: PublishSource,
    raw: EncodedPayload,
  ) {
    super(raw);
  }
  toJSON(): PubRequest {
    const q: PubRequest = { t: 'pub', ch: this.ch, ev: this.ev, data: this.data, src: this.src };
    if (this.from !== undefined) q.from = this.from;
    if (this.ex !== undefined) q.ex = this.ex;
    if (this.at !== undefined) q.at = this.at;
    if (this.w !== undefined) q.w = this.w;
    return q;
  }
}

/** The payload of `o` as JSON text, when it came as such and nobody has read it; else undefined. */
export function rawJson(o: object): string | undefined {
  const raw = (o as Carrier)[RAW];
  return raw instanceof JsonData ? raw.pristine : undefined;
}

/** The payload of `o` as msgpack bytes, when it came as such and nobody has read it; else undefined. */
export function rawMsgpack(o: object): Uint8Array | undefined {
  const raw = (o as Carrier)[RAW];
  return raw instanceof MsgpackData ? raw.pristine : undefined;
}

/** The encoded payload behind `o.data` while it is still good (to hand the same payload on). */
export function payloadOf(o: object): EncodedPayload | undefined {
  const raw = (o as Carrier)[RAW];
  return raw?.untouched ? raw : undefined;
}
