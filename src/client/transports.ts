/**
 * The client's three transports. Each one carries native protocol frames both ways and reports every
 * frame it receives (the welcome first) and, exactly once, that it ended. They know nothing of
 * channels or reconnection: that is the client's job (client.ts).
 *
 * - websocket: /ws, JSON text frames.
 * - sse: /sse?format=native downstream (EventSource where the platform has one, else a fetch() stream),
 *   frames upstream by POST /sse?sid=… .
 * - polling: GET /poll held by the server, frames upstream by POST /poll?sid=… .
 */
import { SseParser } from './sse-parser.js';

export type TransportName = 'websocket' | 'sse' | 'polling';

export const TRANSPORTS: readonly TransportName[] = ['websocket', 'sse', 'polling'];

/** A native protocol frame (docs/protocol.md). */
export interface Frame {
  op: string;
  [key: string]: any;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** False when the server said not to reconnect (e.g. the backend disconnected this user). */
  reconnect: boolean;
  /** HTTP status, when the server refused to open the transport. */
  status?: number;
  /** The server's error body, when it sent one. */
  error?: { code: string; message: string };
}

export interface TransportHooks {
  frame(f: Frame): void;
  close(info: CloseInfo): void;
  /** The server refused POSTed frames (malformed); their requests fail, the transport stays up. */
  refused(frames: Frame[], error: { code: string; message: string }): void;
}

export interface TransportEnv {
  /** http(s)://host[:port][/prefix], without a trailing slash. */
  base: string;
  token?: string;
  WebSocket?: new (url: string, protocols?: string | string[]) => any;
  /** null forces the fetch()-based reader even where EventSource exists. */
  EventSource?: (new (url: string) => any) | null;
  fetch: typeof fetch;
}

export interface Transport {
  readonly name: TransportName;
  send(frames: Frame[]): void;
  /** Closes without reporting `close` to the hooks. */
  close(): void;
}

export function createTransport(name: TransportName, env: TransportEnv, hooks: TransportHooks): Transport {
  switch (name) {
    case 'websocket':
      return new WebSocketTransport(env, hooks);
    case 'sse':
      return new SseTransport(env, hooks);
    case 'polling':
      return new PollingTransport(env, hooks);
    default:
      throw new Error(`unknown transport ${String(name)}`);
  }
}

function tokenQuery(env: TransportEnv, sep: '?' | '&'): string {
  return env.token ? `${sep}token=${encodeURIComponent(env.token)}` : '';
}

function parseFrame(text: unknown): Frame | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    const f = JSON.parse(text);
    return f && typeof f === 'object' && typeof f.op === 'string' ? (f as Frame) : undefined;
  } catch {
    return undefined;
  }
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  const text = await res.text().catch(() => '');
  try {
    const e = JSON.parse(text).error;
    if (e && typeof e.code === 'string') return { code: e.code, message: String(e.message) };
  } catch {
    /* not our JSON: a proxy's page, say */
  }
  return { code: `http_${res.status}`, message: `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}` };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * How long a transport whose POST was told the session is gone still waits for its stream to end. A
 * backstop only (a POST that reached a server which never had the session, say): the server ends the
 * stream as it drops the session, so the stream normally ends within a round trip.
 */
const SESSION_GONE_BACKSTOP_MS = 5000;

abstract class BaseTransport implements Transport {
  abstract readonly name: TransportName;
  protected done = false;
  /** The server's last `disconnect` frame says whether to reconnect. */
  protected farewell?: Frame;
  private goneTimer?: ReturnType<typeof setTimeout>;

  constructor(protected readonly env: TransportEnv, protected readonly hooks: TransportHooks) {}

  abstract send(frames: Frame[]): void;

  close(): void {
    this.done = true;
    this.stop();
  }

  protected abstract shutdown(): void;

  private stop(): void {
    clearTimeout(this.goneTimer);
    this.shutdown();
  }

  /**
   * A POST of frames failed. `unknown_session` means the server ended the session, and why it did (a
   * `disconnect` frame, which may say not to reconnect) is on its way down the SSE stream, which the
   * server ends too; the POST's answer can overtake it. So the stream's end decides, with the farewell
   * read, rather than this answer, which would end the transport as lost and reconnect. A polling
   * session answers its POSTs the same once the server ended it, while a poll takes the disconnect frame.
   */
  /**
   * A WebSocket hides the status of a refused upgrade and EventSource that of a refused stream, and a
   * refused token (401) must stop the client rather than be retried forever: a transport that failed
   * before it opened asks the same URL once with fetch(), which shows it. `refused` tells a refusal
   * from an answer that says the request would have been taken; anything else ends with `otherwise`.
   */
  protected async endAfterAsking(url: string, init: RequestInit, refused: (res: Response) => boolean, otherwise: Partial<CloseInfo> & { reason: string }): Promise<void> {
    try {
      const res = await this.env.fetch(url, init);
      if (refused(res)) return await this.endRefused(res);
      // Not refused (a stream that opens now): this attempt still failed; the client's next one goes on.
      await res.body?.cancel().catch(() => {});
    } catch {
      /* the network itself failed, or a page may not read the answer (CORS) */
    }
    this.end(otherwise);
  }

  /** Ends with the server's refusal: its error, its status, and a close code of 4000 + the status. */
  protected async endRefused(res: Response): Promise<void> {
    const error = await errorOf(res);
    this.end({ reason: error.message, status: res.status, error, code: 4000 + (res.status % 1000) });
  }

  protected postFailed(info: Partial<CloseInfo> & { reason: string }): void {
    if (info.error?.code !== 'unknown_session') return this.end(info);
    if (this.done || this.goneTimer) return;
    this.goneTimer = setTimeout(() => this.end(info), SESSION_GONE_BACKSTOP_MS);
  }

  protected deliver(f: Frame): void {
    if (this.done) return;
    if (f.op === 'disconnect') this.farewell = f;
    this.hooks.frame(f);
  }

  protected end(info: Partial<CloseInfo> & { reason: string }): void {
    if (this.done) return;
    this.done = true;
    this.stop();
    const fw = this.farewell;
    this.hooks.close({
      code: fw?.code ?? info.code ?? 1006,
      reason: fw?.reason ?? info.reason,
      reconnect: fw ? fw.reconnect !== false : info.reconnect ?? true,
      status: info.status,
      error: info.error,
    });
  }
}

class WebSocketTransport extends BaseTransport {
  readonly name = 'websocket' as const;
  private readonly ws: any;
  /** The welcome's max_payload: a larger frame would make the server close the connection (1009). */
  private maxBytes = Infinity;

  constructor(env: TransportEnv, hooks: TransportHooks) {
    super(env, hooks);
    const Ctor = env.WebSocket ?? (globalThis as any).WebSocket;
    if (!Ctor) throw new Error('no WebSocket implementation: pass options.WebSocket (e.g. the ws package) on Node < 22');
    this.ws = new Ctor(`${env.base.replace(/^http/, 'ws')}/ws${tokenQuery(env, '?')}`);
    let refusal: { code: string; message: string } | undefined;
    let opened = false;
    this.ws.onopen = () => (opened = true);
    this.ws.onmessage = (ev: { data: unknown }) => {
      const f = parseFrame(ev.data);
      if (f?.op === 'error' && f.ref === undefined && f.error) refusal = f.error;
      if (f?.op === 'welcome' && typeof f.max_payload === 'number' && f.max_payload > 0) this.maxBytes = f.max_payload;
      if (f) this.deliver(f);
    };
    this.ws.onclose = (ev: { code: number; reason: string }) => {
      // A token the server could not check at the upgrade is refused just after it: error frame, then 4001.
      if (ev.code === 4001) {
        const error = refusal ?? { code: ev.reason || 'unauthorized', message: ev.reason || 'unauthorized' };
        return this.end({ code: ev.code, reason: error.message, status: 401, error });
      }
      const closed = { code: ev.code, reason: ev.reason || 'WebSocket closed' };
      // A plain GET of the same URL answers with what the upgrade got (docs/protocol.md, Connecting);
      // 426 means it would have been taken.
      if (!opened) return void this.endAfterAsking(`${env.base}/ws${tokenQuery(env, '?')}`, {}, (res) => !res.ok && res.status !== 426, closed);
      this.end(closed);
    };
    // An error is always followed by a close event; the ws package also needs a listener to not throw.
    this.ws.onerror = () => {};
  }

  send(frames: Frame[]): void {
    if (this.done || this.ws.readyState !== 1) return;
    for (const f of frames) {
      const text = frameJson(f, this.hooks.refused);
      if (text === undefined) continue;
      // Refused here, as SSE and long-polling get it from the server: sent, it would cost the
      // connection and every request in flight on it. (UTF-8 is at most 3 bytes per UTF-16 unit.)
      if (text.length * 3 > this.maxBytes && utf8Length(text) > this.maxBytes) {
        this.hooks.refused([f], { code: 'payload_too_large', message: `frame of ${utf8Length(text)} bytes; the server takes at most ${this.maxBytes}` });
        continue;
      }
      this.ws.send(text);
    }
  }

  protected shutdown(): void {
    this.ws.onmessage = () => {};
    this.ws.onclose = () => {};
    try {
      this.ws.close(1000);
    } catch {
      /* still connecting in some implementations */
    }
  }
}

/**
 * A frame's JSON, or undefined when its data is what JSON cannot carry (a BigInt, a cycle): that frame
 * is refused with bad_data here, where it is serialised, so it neither throws out of a send queue (an
 * uncaught error, and every frame behind it stuck) nor reaches the server.
 */
function frameJson(f: Frame, refused: TransportHooks['refused']): string | undefined {
  try {
    return JSON.stringify(f);
  } catch (err) {
    refused([f], { code: 'bad_data', message: `${String(f.op)}: its data cannot be sent as JSON (${(err as Error).message})` });
    return undefined;
  }
}

/** The server's default --max-payload, for a server whose welcome does not say. */
const DEFAULT_MAX_PAYLOAD = 65536;

const encoder = new TextEncoder();

function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

/**
 * Frames upstream, one POST at a time: a second POST racing the first could reach the session's
 * thread first (different connection, maybe a different shard) and reorder the client's frames.
 */
class Poster {
  private queue: Frame[] = [];
  private busy = false;
  private stopped = false;
  /**
   * Frames at the queue's head to post one per POST: the server refuses a whole POST for one malformed
   * frame (400, none runs), so a refused batch is sent again frame by frame and only the bad one fails.
   */
  private alone = 0;
  /** The server's largest body (welcome max_payload): frames are batched up to it, not only 100 at a time. */
  private readonly maxBytes: number;

  constructor(
    private readonly env: TransportEnv,
    private readonly url: string,
    private readonly fail: (info: Partial<CloseInfo> & { reason: string }) => void,
    private readonly refused: (frames: Frame[], error: { code: string; message: string }) => void,
    maxPayload: unknown,
  ) {
    this.maxBytes = typeof maxPayload === 'number' && maxPayload > 0 ? maxPayload : DEFAULT_MAX_PAYLOAD;
  }

  send(frames: Frame[]): void {
    if (this.stopped) return;
    this.queue.push(...frames);
    if (!this.busy) void this.pump();
  }

  stop(): void {
    this.stopped = true;
    this.queue = [];
  }

  /**
   * Up to 100 frames whose JSON array fits the server's body limit: a batch over it is refused whole
   * (413), every frame in it with payload_too_large however small. A frame too large alone goes alone.
   */
  private nextBatch(): [Frame[], string] {
    const parts: string[] = [];
    let bytes = 2;
    let n = 0;
    const most = this.alone > 0 ? 1 : 100;
    for (; n < this.queue.length && n < most; n++) {
      const json = frameJson(this.queue[n]!, this.refused);
      if (json === undefined) {
        this.queue.splice(n--, 1);
        continue;
      }
      const size = utf8Length(json) + (n > 0 ? 1 : 0);
      if (n > 0 && bytes + size > this.maxBytes) break;
      parts.push(json);
      bytes += size;
    }
    if (n > 0 && this.alone > 0) this.alone--;
    return [this.queue.splice(0, n), `[${parts.join(',')}]`];
  }

  private async pump(): Promise<void> {
    this.busy = true;
    while (this.queue.length > 0 && !this.stopped) {
      const [batch, body] = this.nextBatch();
      // Every frame taken was refused as it was serialised (frameJson): nothing to post.
      if (batch.length === 0) continue;
      let res: Response;
      try {
        // text/plain keeps a cross-origin POST "simple": no preflight round trip.
        res = await this.env.fetch(this.url, { method: 'POST', body, headers: { 'content-type': 'text/plain;charset=UTF-8' } });
      } catch (err) {
        this.stopped = true;
        return this.fail({ reason: `POST failed: ${messageOf(err)}` });
      }
      if (res.ok) {
        await res.text().catch(() => '');
        continue;
      }
      const error = await errorOf(res);
      if (res.status === 400 || res.status === 413) {
        // Nothing of it ran: the frames batched with the bad one go again, each alone (as over a
        // WebSocket, where only the bad frame is refused), in their order, ahead of anything queued since.
        if (batch.length > 1) {
          this.queue.unshift(...batch);
          this.alone += batch.length;
          continue;
        }
        this.refused(batch, error);
        continue;
      }
      this.stopped = true;
      return this.fail({ reason: error.message, status: res.status, error });
    }
    this.busy = false;
  }
}

class SseTransport extends BaseTransport {
  readonly name = 'sse' as const;
  private es?: any;
  /** A frame arrived: the stream was open, so an error now is a lost stream, not a refusal. */
  private opened = false;
  private readonly abort = new AbortController();
  private poster?: Poster;

  constructor(env: TransportEnv, hooks: TransportHooks) {
    super(env, hooks);
    const url = `${env.base}/sse?format=native${tokenQuery(env, '&')}`;
    const ES = env.EventSource === undefined ? (globalThis as any).EventSource : env.EventSource;
    if (ES) {
      this.es = new ES(url);
      this.es.onmessage = (ev: { data: unknown }) => this.onData(ev.data);
      // EventSource would reconnect by itself, without our positions: the client reconnects instead.
      this.es.onerror = () => {
        if (this.opened) return this.end({ reason: 'SSE stream failed' });
        this.es.onerror = null;
        this.es.close();
        void this.endAfterAsking(url, { headers: { accept: 'text/event-stream' }, signal: this.abort.signal }, (res) => !res.ok, { reason: 'SSE stream failed' });
      };
    } else {
      void this.read(url);
    }
  }

  private onData(data: unknown): void {
    const f = parseFrame(data);
    if (!f) return;
    this.opened = true;
    if (f.op === 'welcome' && typeof f.session === 'string') {
      this.poster = new Poster(this.env, `${this.env.base}/sse?sid=${encodeURIComponent(f.session)}`, (i) => this.postFailed(i), (fr, e) => this.hooks.refused(fr, e), f.max_payload);
    }
    this.deliver(f);
  }

  private async read(url: string): Promise<void> {
    try {
      const res = await this.env.fetch(url, { headers: { accept: 'text/event-stream' }, signal: this.abort.signal });
      if (!res.ok || !res.body) return await this.endRefused(res);
      const parser = new SseParser((ev) => {
        if (ev.event === 'message') this.onData(ev.data);
      });
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.done) break;
        parser.push(decoder.decode(value, { stream: true }));
      }
      this.end({ reason: 'SSE stream ended' });
    } catch (err) {
      this.end({ reason: `SSE stream failed: ${messageOf(err)}` });
    }
  }

  send(frames: Frame[]): void {
    this.poster?.send(frames);
  }

  protected shutdown(): void {
    this.poster?.stop();
    if (this.es) {
      this.es.onmessage = null;
      this.es.onerror = null;
      this.es.close();
    }
    this.abort.abort();
  }
}

/** Polls of an open session sent again after a 503 or a cut connection before the transport ends. */
const POLL_RETRIES = 4;

class PollingTransport extends BaseTransport {
  readonly name = 'polling' as const;
  private readonly abort = new AbortController();
  private poster?: Poster;
  private sid?: string;
  private ack = 0;
  /** The server's hold time (welcome `heartbeat`), to tell a held poll from a dead one. */
  private holdMs = 25_000;

  constructor(env: TransportEnv, hooks: TransportHooks) {
    super(env, hooks);
    void this.run();
  }

  /**
   * `retries`: how often a poll of an open session is sent again, on the same session, when it failed
   * without the session being refused: a 503 (the shard that took the request crashed or is stopping
   * while it waited on the session's own shard) or a connection cut under it. Reconnecting instead
   * would leave the session, alive on its shard, to idle out holding its channels. A session that is
   * really gone answers 404 to the retry, and a server that is gone fails it: then the transport ends.
   */
  private async get(url: string, timeoutMs: number, retries = 0): Promise<{ seq: number; frames: Frame[] } | undefined> {
    for (let attempt = 0; ; attempt++) {
      const timer = setTimeout(() => this.end({ reason: `poll not answered within ${timeoutMs} ms` }), timeoutMs);
      try {
        let res: Response;
        try {
          res = await this.env.fetch(url, { signal: this.abort.signal });
        } catch (err) {
          if (this.done || attempt >= retries) throw err;
          await this.pause(attempt);
          continue;
        }
        if (res.status === 503 && attempt < retries && !this.done) {
          await res.body?.cancel().catch(() => {});
          await this.pause(attempt);
          continue;
        }
        if (!res.ok) {
          await this.endRefused(res);
          return undefined;
        }
        const body = (await res.json()) as { seq: number; frames: Frame[] };
        if (!body || !Number.isSafeInteger(body.seq) || !Array.isArray(body.frames)) throw new Error('malformed poll answer');
        return body;
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** 100, 200, 400… ms: long enough for the acceptor to stop handing connections to a crashed shard. */
  private pause(attempt: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
  }

  private async run(): Promise<void> {
    try {
      let body = await this.get(`${this.env.base}/poll${tokenQuery(this.env, '?')}`, 30_000);
      while (body && !this.done) {
        this.ack = body.seq;
        for (const f of body.frames) {
          if (f && f.op === 'welcome' && typeof f.session === 'string') {
            this.sid = f.session;
            if (typeof f.heartbeat === 'number') this.holdMs = f.heartbeat * 1000;
            this.poster = new Poster(this.env, `${this.env.base}/poll?sid=${encodeURIComponent(f.session)}`, (i) => this.postFailed(i), (fr, e) => this.hooks.refused(fr, e), f.max_payload);
          }
          if (f && typeof f.op === 'string') this.deliver(f);
        }
        if (this.farewell) return this.end({ reason: 'disconnected by the server' });
        if (!this.sid) return this.end({ reason: 'no session in the poll answer' });
        body = await this.get(`${this.env.base}/poll?sid=${encodeURIComponent(this.sid)}&ack=${this.ack}`, this.holdMs + 15_000, POLL_RETRIES);
      }
    } catch (err) {
      this.end({ reason: `poll failed: ${messageOf(err)}` });
    }
  }

  send(frames: Frame[]): void {
    this.poster?.send(frames);
  }

  protected shutdown(): void {
    this.poster?.stop();
    this.abort.abort();
    if (this.sid && !this.farewell) {
      // Tell the server now rather than let the session idle out (and hold its channels) meanwhile.
      this.env.fetch(`${this.env.base}/poll?sid=${encodeURIComponent(this.sid)}`, { method: 'DELETE' }).then((r) => r.text(), () => {}).catch(() => {});
    }
  }
}
