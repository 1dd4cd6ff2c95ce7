import type { Publication } from './native.js';
import type { PublishSource, Request } from '../runtime/messages.js';

/**
 * A payload kept as the JSON text it came in as, from the edge that parsed it to the wire frames that
 * carry it: the rings move the text, and the JSON codecs splice it into their frames, so a publication
 * from a JSON client or the HTTP API is not decoded and re-encoded at every thread it crosses (issue 15).
 *
 * An object carrying such a payload (a publish request, a message for a channel actor, a Publication)
 * has `data` as a getter whose value is parsed on first read, and the text under the RAW symbol.
 *
 * Once the value has been read, the text is no longer used: whoever read it may have changed it in place
 * (a channel actor's onPublish, say), and the value is then what counts.
 */
export class JsonData {
  private value?: unknown;
  private parsed = false;

  constructor(readonly text: string) {}

  /** The value of a JSON-representable payload, or undefined for a value JSON cannot carry exactly. */
  static of(value: unknown): JsonData | undefined {
    const text = JSON.stringify(value);
    return text === undefined ? undefined : new JsonData(text);
  }

  read(): unknown {
    if (!this.parsed) {
      this.value = JSON.parse(this.text);
      this.parsed = true;
    }
    return this.value;
  }

  /** The text, while nobody has read (and so could have changed) the value. */
  get pristine(): string | undefined {
    return this.parsed ? undefined : this.text;
  }
}

export const RAW: unique symbol = Symbol('rt.jsonData');

interface Carrier {
  [RAW]?: JsonData;
}

/*
 * The carriers are classes with a `data` getter: a plain object literal with accessors costs ~0.8 µs
 * to make in V8 and Object.defineProperty as much, a class instance ~20 ns (measured while writing
 * this). What a getter on the prototype does not give, toJSON() does: JSON.stringify and msgpackr
 * (for any object that is not a plain one) encode what it returns, the value included. Carriers never
 * reach user code: a channel actor with a hook that reads messages gets a plain one (actor-host.ts).
 */

/** What the carriers share: `data` read from the payload on demand, or replaced by a value. */
abstract class JsonCarrier implements Carrier {
  [RAW]?: JsonData;
  constructor(raw: JsonData) {
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
export class JsonPublication extends JsonCarrier implements Publication {
  user?: string;
  constructor(
    public channel: string,
    public event: string,
    public offset: number,
    raw: JsonData,
  ) {
    super(raw);
  }
  toJSON(): Publication {
    const p: Publication = { channel: this.channel, event: this.event, data: this.data, offset: this.offset };
    if (this.user !== undefined) p.user = this.user;
    return p;
  }
}

/** A message for a channel actor without message hooks, whose `data` is `raw`'s value. */
export class JsonMessage extends JsonCarrier {
  constructor(
    public event: string,
    raw: JsonData,
  ) {
    super(raw);
  }
  toJSON(): { event: string; data: unknown } {
    return { event: this.event, data: this.data };
  }
}

type PubRequest = Extract<Request, { t: 'pub' }>;

/** A publish request whose `data` is `raw`'s value, parsed on first read. */
export class JsonPubRequest extends JsonCarrier implements PubRequest {
  readonly t = 'pub' as const;
  from?: PubRequest['from'];
  ex?: string;
  at?: number;
  w?: 1;
  constructor(
    public ch: string,
    public ev: string,
    public src: PublishSource,
    raw: JsonData,
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

/** The payload of `o` as JSON text, when it still has one nobody has read; else undefined. */
export function rawJson(o: object): string | undefined {
  return (o as Carrier)[RAW]?.pristine;
}

/** The JsonData behind `o.data` while its text is still good (to hand the same payload on). */
export function jsonDataOf(o: object): JsonData | undefined {
  const raw = (o as Carrier)[RAW];
  return raw?.pristine === undefined ? undefined : raw;
}
