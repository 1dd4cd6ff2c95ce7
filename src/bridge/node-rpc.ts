/**
 * Request/reply between nodes (shard incarnations) through Redis: each node listens on its inbox
 * (keys.inbox, sharded pub/sub on a Cluster) and sends to another's. A send that reaches no listener
 * fails at once with `owner_gone` (PUBLISH counts receivers): the other node is dead, no need to wait
 * for a timeout. Frames are msgpack: `{k:'q', id, from, ch, op, a}` and `{k:'r', id, v | e}`, and the
 * one-way `{k:'n', id: 0, ch, op, a}` (an activation's pushes and kicks: nobody waits for an answer).
 */
import { Packr, Unpackr } from 'msgpackr';
import { RtError, toErrorBody } from '../errors.js';
import type { RedisBroker } from './redis-broker.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export type Serve = (channel: string, op: string, args: unknown[]) => Promise<unknown>;

interface Waiting {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout;
}

interface WireError {
  code: string;
  message: string;
  status?: number;
}

export class NodeRpc {
  private seq = 0;
  private readonly waiting = new Map<number, Waiting>();

  /** `serve` answers requests; `hear` takes notices (refusing what may not come one way). */
  constructor(
    private readonly broker: RedisBroker,
    private readonly serve: Serve,
    private readonly onInvalid: (why: string) => void,
    private readonly hear: Serve = serve,
    private readonly onInternal: (msg: string, err: unknown) => void = () => {},
  ) {
    broker.onInbox = (payload) => this.receive(payload);
  }

  async request(node: string, channel: string, op: string, args: unknown[], timeoutMs: number): Promise<unknown> {
    const id = ++this.seq;
    const reply = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new RtError('timeout', `the node running the actor of ${channel} did not answer within ${timeoutMs} ms`, 504));
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
    });
    // The answer can arrive (on the subscriber connection) before PUBLISH's own reply does: a refusal
    // settling `reply` while nobody awaits it yet must not count as an unhandled rejection.
    reply.catch(() => {});
    let receivers: number;
    try {
      receivers = await this.broker.sendTo(node, packr.pack({ k: 'q', id, from: this.broker.node, ch: channel, op, a: args }));
    } catch (err) {
      this.settle(id, undefined, err);
      return reply;
    }
    if (receivers === 0) this.settle(id, undefined, new RtError('owner_gone', `the node running the actor of ${channel} is gone`, 503));
    return reply;
  }

  /**
   * One way: resolves true once the node's inbox had a listener, false when the node is gone. What the
   * node makes of it is its own business (a refusal there is counted as an invalid frame).
   */
  async notify(node: string, channel: string, op: string, args: unknown[]): Promise<boolean> {
    return (await this.broker.sendTo(node, packr.pack({ k: 'n', id: 0, ch: channel, op, a: args }))) > 0;
  }

  private settle(id: number, value: unknown, err?: unknown): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    if (err !== undefined) w.reject(err);
    else w.resolve(value);
  }

  private receive(payload: Buffer): void {
    let f: { k?: unknown; id?: unknown; from?: unknown; ch?: unknown; op?: unknown; a?: unknown; v?: unknown; e?: WireError };
    try {
      f = unpackr.unpack(payload) as typeof f;
      if (!f || typeof f !== 'object' || typeof f.id !== 'number') throw new Error('not a frame');
    } catch (err) {
      return this.onInvalid(`unreadable inbox frame: ${(err as Error).message}`);
    }
    if (f.k === 'r') {
      if (f.e) this.settle(f.id, undefined, new RtError(String(f.e.code), String(f.e.message), Number(f.e.status) || 500));
      else this.settle(f.id, f.v ?? null);
      return;
    }
    if (f.k === 'n') {
      if (typeof f.ch !== 'string' || typeof f.op !== 'string' || !Array.isArray(f.a)) return this.onInvalid('malformed inbox notice');
      const op = f.op;
      this.hear(f.ch, op, f.a).catch((err: unknown) => this.onInvalid(`inbox notice ${op.slice(0, 40)} refused: ${(err as Error)?.message ?? String(err)}`));
      return;
    }
    if (f.k !== 'q' || typeof f.from !== 'string' || typeof f.ch !== 'string' || typeof f.op !== 'string' || !Array.isArray(f.a)) {
      return this.onInvalid('malformed inbox request');
    }
    const { id, from } = f;
    this.serve(f.ch, f.op, f.a).then(
      (v) => this.answer(from, { k: 'r', id, v: v === undefined ? null : v }),
      (err: unknown) => {
        // Coded errors cross as they are (a hook's refusal, actor_failed); anything else is a bug here,
        // logged here, and its message (a user's or ours) stays here.
        const body = toErrorBody(err);
        if (body.code === 'internal') this.onInternal(`serving ${String(f.op).slice(0, 40)} for ${String(f.ch).slice(0, 200)} failed`, err);
        const status = err instanceof RtError ? err.status : body.code === 'internal' ? 500 : Number((err as { status?: unknown }).status) || 500;
        this.answer(from, { k: 'r', id, e: { ...body, status } });
      },
    );
  }

  private answer(node: string, frame: Record<string, unknown>): void {
    let bytes: Buffer;
    try {
      bytes = packr.pack(frame);
    } catch (err) {
      bytes = packr.pack({ k: 'r', id: frame.id, e: { code: 'internal', message: `reply not serialisable: ${(err as Error).message}`, status: 500 } });
    }
    // Nobody to tell when this fails: the requester times out and retries.
    this.broker.sendTo(node, bytes).catch(() => {});
  }

  close(): void {
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new RtError('unavailable', 'shutting down', 503));
      this.waiting.delete(id);
    }
  }
}
