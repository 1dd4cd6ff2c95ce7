/**
 * Server-Sent Events at GET /sse (DESIGN.md; docs/transports.md has the wire details).
 *
 *   GET /sse?channels=a,b[&token=…][&lastEventId=…][&format=events|native]
 *
 * format=events (the default, for EventSource and curl): each publication is `id: <positions>`,
 * `event: <event>`, `data: {"channel","data","offset"}`; control events are named `rt:…` so they cannot
 * clash with application events. format=native: every event is unnamed and its data is a native
 * protocol frame (what /ws sends), so one `onmessage` sees everything — the client library uses it.
 *
 * The event id holds the stream position of every channel in `channels`, in that order:
 * `<offset>.<epoch>` joined by commas (empty for a channel with no position yet). A reconnecting
 * EventSource sends it back as Last-Event-ID and each channel resumes from history; a position whose
 * epoch is not the channel's current one cannot be trusted (server restarted, or the id was meant for
 * another channel list) and is answered with `rt:resync` for that channel.
 *
 * Each stream is also a session: frames POSTed to /sse?sid=… (or /poll?sid=…) run on it and their
 * replies come down the stream, so SSE + POST is a complete bidirectional transport.
 */
import { countRefusal } from '../runtime/instruments.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { JSON_CODEC, registerCodec, type Encoded } from '../protocol/codecs.js';
import { rawJson } from '../protocol/encoded-payload.js';
import { assertChannel, assertDistinctChannels, wirePublication, type ClientFrame, type Publication, type StreamPosition } from '../protocol/native.js';
import { Client } from '../runtime/client.js';
import type { ThreadContext } from '../runtime/context.js';
import type { SubscribeResult } from '../runtime/messages.js';
import { RtError } from '../errors.js';
import { authenticate, type Reply } from './native-session.js';
import { queryParams, requestIp, sendError, snapshot, statusLine, type Req } from './http.js';
import { addSession, admitSession, corsOrThrow, enableSessions, newSid, registerSessionRoutes, removeSession, runFrames, tokenOf, type Session } from './sessions.js';
import type { TokenBucket } from '../security/token-bucket.js';

/** Event names come from publishers; a line break inside one would forge SSE fields. */
function eventName(e: string): string {
  return /[\r\n]/.test(e) ? e.replace(/[\r\n]+/g, ' ') : e;
}

/**
 * JSON text spliced in as it came (a Pusher API `data` string, kept byte for byte) may hold line breaks
 * between its tokens: written on one `data:` line they would end the field there, and the reader would
 * get a cut-off, unparsable event. Each line goes on a `data:` line of its own, which a reader joins
 * with "\n" back into the same JSON (a CR, also JSON whitespace, comes back as LF).
 */
function dataLines(json: string): string {
  return json.includes('\n') || json.includes('\r') ? json.replace(/\r\n|\r|\n/g, '\ndata: ') : json;
}

/**
 * Publications are encoded once per shard for all SSE clients, but each client's `id:` depends on its
 * own channel list. So the codec prefixes a publication with a routing line `<offset> <channel>\n` that
 * SseClient.sendEncoded strips, adding the client's id in its place. Other outputs carry no prefix and
 * start with a letter, which is how the two are told apart.
 */
const SSE_EVENTS = registerCodec({
  name: 'sse',
  tag: 'sse-events:',
  binary: false,
  pub: (p) => {
    const raw = rawJson(p);
    const body = raw === undefined ? JSON.stringify({ channel: p.channel, data: p.data, offset: p.offset }) : `{"channel":${JSON.stringify(p.channel)},"data":${raw},"offset":${JSON.stringify(p.offset)}}`;
    return `${p.offset} ${p.channel}\nevent: ${eventName(p.event)}\ndata: ${raw === undefined ? body : dataLines(body)}\n\n`;
  },
  join: (channel, member) => `event: rt:join\ndata: ${JSON.stringify({ channel, member })}\n\n`,
  leave: (channel, member) => `event: rt:leave\ndata: ${JSON.stringify({ channel, member })}\n\n`,
  user: (event, data) => `event: ${eventName(event)}\ndata: ${JSON.stringify({ data })}\n\n`,
  push: (channel, event, data) => `event: ${eventName(event)}\ndata: ${JSON.stringify({ channel, data })}\n\n`,
  pushJson: (channel, event, js) => `event: ${eventName(event)}\ndata: ${dataLines(`{"channel":${JSON.stringify(channel)},"data":${js}}`)}\n\n`,
  kicked: (channel, reason) => `event: rt:kicked\ndata: ${JSON.stringify({ channel, reason })}\n\n`,
});

const SSE_NATIVE = registerCodec({
  name: 'sse-native',
  tag: 'sse-native:',
  binary: false,
  pub: (p) => `${p.offset} ${p.channel}\ndata: ${dataLines(JSON_CODEC.pub(p) as string)}\n\n`,
  join: (channel, member) => `data: ${JSON_CODEC.join(channel, member) as string}\n\n`,
  leave: (channel, member) => `data: ${JSON_CODEC.leave(channel, member) as string}\n\n`,
  user: (event, data) => `data: ${JSON_CODEC.user(event, data) as string}\n\n`,
  push: (channel, event, data) => `data: ${JSON_CODEC.push!(channel, event, data) as string}\n\n`,
  pushJson: (channel, event, js) => `data: ${dataLines(JSON_CODEC.pushJson!(channel, event, js) as string)}\n\n`,
  kicked: (channel, reason) => `data: ${JSON_CODEC.kicked!(channel, reason) as string}\n\n`,
});

const POSITION_RE = /^(\d{1,15})\.([A-Za-z0-9_-]{1,64})$/;

/** Parses a Last-Event-ID written by formatPositions for `count` channels. */
export function parsePositions(id: string, count: number): (StreamPosition | undefined)[] {
  const parts = id.split(',');
  if (parts.length > count) {
    throw new RtError('bad_request', `Last-Event-ID holds ${parts.length} positions but "channels" lists ${count}; reconnect with the same channel list`);
  }
  return parts.map((p, i) => {
    if (p === '') return undefined;
    const m = POSITION_RE.exec(p);
    if (!m) throw new RtError('bad_request', `Last-Event-ID position ${i} is not <offset>.<epoch>: ${JSON.stringify(p.slice(0, 80))}`);
    return { offset: Number(m[1]), epoch: m[2]! };
  });
}

export function formatPositions(pos: readonly (StreamPosition | undefined)[]): string {
  return pos.map((p) => (p ? `${p.offset}.${p.epoch}` : '')).join(',');
}

/** SSE streams on this thread, for shutdown and tests. */
const streams = new Set<SseClient>();

const dirty = new Set<SseClient>();
let flushScheduled = false;

function scheduleFlush(c: SseClient): void {
  dirty.add(c);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(() => {
    flushScheduled = false;
    const list = [...dirty];
    dirty.clear();
    for (const x of list) x.flush();
  });
}

export class SseClient extends Client implements Session {
  readonly sid: string;
  readonly client = this;
  /** The channels named in the URL, whose positions make up the event id. */
  private readonly tracked: string[];
  private readonly index = new Map<string, number>();
  private readonly pos: (StreamPosition | undefined)[];
  private readonly native: boolean;
  private readonly limit: number;
  private readonly keepaliveMs: number;
  /** Until the subscriptions settle the status is unknown, so everything waits here. */
  private started = false;
  private ended = false;
  /**
   * What this turn wrote (flushed at its end), or everything since uWS reported backpressure (flushed
   * by onWritable); bounded by `limit` together with `unconfirmed`.
   */
  private queue: string[] = [];
  private queued = 0;
  /** Bytes handed to uWS since it last accepted a write whole: an upper bound on what it still buffers. */
  private unconfirmed = 0;
  private blocked = false;
  /** Writing one channel's resume (see write). */
  private resuming = false;
  private lastWrite = Date.now();
  bucket?: TokenBucket;
  /** Set once counted against the connection limits (released exactly once, in cleanup). */
  admittedIp?: string;

  constructor(
    private readonly ctx: ThreadContext,
    private readonly res: HttpResponse,
    readonly state: { aborted: boolean },
    channels: string[],
    since: (StreamPosition | undefined)[],
    format: 'events' | 'native',
    private readonly headers: Record<string, string>,
  ) {
    super(ctx.hub.nextSocketId(), 'sse', format === 'native' ? SSE_NATIVE : SSE_EVENTS);
    this.sid = newSid(ctx.thread);
    this.native = format === 'native';
    this.tracked = channels;
    channels.forEach((c, i) => this.index.set(c, i));
    this.pos = channels.map((_, i) => since[i]);
    this.limit = ctx.config.maxBackpressure;
    this.keepaliveMs = ctx.config.sseKeepalive * 1000;
  }

  sendEncoded(data: Encoded): void {
    const s = data as string;
    const c = s.charCodeAt(0);
    if (c >= 48 && c <= 57) {
      const sp = s.indexOf(' ');
      const nl = s.indexOf('\n', sp);
      const i = this.index.get(s.slice(sp + 1, nl));
      if (i !== undefined) {
        const p = this.pos[i];
        const offset = Number(s.slice(0, sp));
        if (p) this.pos[i] = { offset, epoch: p.epoch };
        this.write(`id: ${formatPositions(this.pos)}\n${s.slice(nl + 1)}`);
      } else {
        this.write(s.slice(nl + 1));
      }
      return;
    }
    this.write(s);
  }

  /**
   * Left out of a publication of a channel it tracks: an id-only message moves the stream's event id
   * past it (EventSource sets lastEventId and dispatches nothing), so a reconnect does not resume it.
   */
  override excludedFrom(pub: Publication): void {
    const i = this.index.get(pub.channel);
    const p = i === undefined ? undefined : this.pos[i];
    if (!p || pub.offset <= p.offset) return;
    this.pos[i!] = { offset: pub.offset, epoch: p.epoch };
    this.write(`id: ${formatPositions(this.pos)}\n\n`);
  }

  /** A control event: named `rt:<name>` in events mode, a native frame in native mode. */
  private control(name: string, body: Record<string, unknown>, frame: Record<string, unknown>, withId = false): void {
    const id = withId && this.tracked.length > 0 ? `id: ${formatPositions(this.pos)}\n` : '';
    if (this.native) this.write(`${id}data: ${JSON.stringify(frame)}\n\n`);
    else this.write(`${id}event: rt:${name}\ndata: ${JSON.stringify(body)}\n\n`);
  }

  sendReply(r: Reply): void {
    this.control('reply', r, r);
  }

  override tokenExpiring(deadline: number): void {
    this.control('refresh', { deadline }, { op: 'refresh', deadline });
  }

  welcome(): void {
    const body = { socket_id: this.id, session: this.sid, user: this.user ?? null, heartbeat: this.ctx.config.sseKeepalive, max_payload: this.ctx.config.maxPayload };
    this.control('welcome', body, { op: 'welcome', ...body, protocol: 1 });
  }

  private pubEvent(p: Publication, i: number): void {
    this.pos[i] = { offset: p.offset, epoch: this.pos[i]!.epoch };
    const id = `id: ${formatPositions(this.pos)}\n`;
    if (this.native) this.write(`${id}data: ${dataLines(JSON_CODEC.pub(p) as string)}\n\n`);
    else this.write(`${id}event: ${eventName(p.event)}\ndata: ${JSON.stringify({ channel: p.channel, data: p.data, offset: p.offset })}\n\n`);
  }

  /**
   * A channel from the URL joined (runs inside hub.subscribe's beforeJoin, so what is written here
   * precedes every live publication of the channel).
   */
  joined(channel: string, since: StreamPosition | undefined, res: SubscribeResult): void {
    if (this.overLimit()) return this.tooSlow();
    this.resuming = true;
    try {
      this.joinedEvents(channel, since, res);
    } finally {
      this.resuming = false;
    }
  }

  private overLimit(): boolean {
    return this.queued + this.unconfirmed > this.limit;
  }

  private joinedEvents(channel: string, since: StreamPosition | undefined, res: SubscribeResult): void {
    const i = this.index.get(channel)!;
    if (this.native) {
      const r: Record<string, unknown> = { op: 'reply', ok: true, channel, offset: res.offset, epoch: res.epoch };
      if (res.recovered !== undefined) {
        r.recovered = res.recovered;
        r.publications = (res.pubs ?? []).map(wirePublication);
      }
      if (res.members) r.members = res.members;
      this.pos[i] = { offset: res.offset, epoch: res.epoch };
      this.control('reply', r, r, true);
      return;
    }
    if (since && res.recovered) {
      this.pos[i] = { offset: since.offset, epoch: res.epoch };
      for (const p of res.pubs ?? []) this.pubEvent(p, i);
    }
    this.pos[i] = { offset: res.offset, epoch: res.epoch };
    if (since && !res.recovered) {
      const reason = since.epoch === res.epoch ? 'history_gap' : 'epoch_changed';
      this.control('resync', { channel, offset: res.offset, epoch: res.epoch, reason }, {}, true);
    }
    const body: Record<string, unknown> = { channel, offset: res.offset, epoch: res.epoch };
    if (since) body.recovered = res.recovered === true;
    if (res.members) body.members = res.members;
    this.control('subscribed', body, {}, true);
  }

  private write(text: string): void {
    if (this.ended) return;
    // Too slow is a reader that leaves the limit's worth unread, as for a WebSocket (security.md): what
    // already waits is measured, not the event that comes. One large event (a resume of many
    // publications, a long member list) would otherwise end every stream that asks for it, and every
    // reconnect would ask for it again. A channel's resume is many events: measured once, before it.
    if (!this.resuming && this.overLimit()) return this.tooSlow();
    this.queue.push(text);
    // Bytes, as uWS buffers them: a string's length would count a '€' as 1 of its 3.
    this.queued += Buffer.byteLength(text);
    // Everything written in one turn (a mesh drain delivers many publications) goes out in one write:
    // one syscall per stream per turn instead of one per message.
    if (this.started && !this.blocked) scheduleFlush(this);
  }

  /** @internal Writes what the turn queued, unless uWS is still draining an earlier write. */
  flush(): void {
    if (!this.started || this.blocked || this.ended || this.queue.length === 0) return;
    const chunk = this.queue.length === 1 ? this.queue[0]! : this.queue.join('');
    this.queue = [];
    this.queued = 0;
    this.rawWrite(chunk);
  }

  private rawWrite(text: string): void {
    if (this.state.aborted) return;
    let ok = true;
    this.res.cork(() => {
      ok = this.res.write(text);
    });
    this.wrote(Buffer.byteLength(text), ok);
  }

  private wrote(n: number, ok: boolean): void {
    this.lastWrite = Date.now();
    if (ok) {
      this.unconfirmed = 0;
      this.blocked = false;
    } else {
      this.unconfirmed += n;
      this.blocked = true;
    }
  }

  /** Subscriptions settled: send the headers and everything queued so far, then stream. */
  start(): void {
    if (this.state.aborted || this.ended) return;
    this.started = true;
    const first = `retry: 2000\n\n${this.queue.join('')}`;
    this.queue = [];
    this.queued = 0;
    let ok = true;
    this.res.cork(() => {
      this.res.writeStatus('200 OK');
      this.res.writeHeader('content-type', 'text/event-stream; charset=utf-8');
      this.res.writeHeader('cache-control', 'no-cache, no-transform');
      // nginx buffers proxied responses unless told not to (docs/transports.md).
      this.res.writeHeader('x-accel-buffering', 'no');
      for (const [k, v] of Object.entries(this.headers)) this.res.writeHeader(k, v);
      ok = this.res.write(first);
    });
    this.wrote(Buffer.byteLength(first), ok);
    this.res.onWritable(() => {
      // Called before uWS drains its own buffer; whatever we write is appended to it.
      if (this.queue.length > 0 && !this.ended && !this.state.aborted) {
        const chunk = this.queue.join('');
        this.queue = [];
        this.queued = 0;
        this.wrote(Buffer.byteLength(chunk), this.res.write(chunk));
        if (this.unconfirmed > this.limit) this.tooSlow();
      } else if (this.queue.length === 0) {
        this.blocked = false;
      }
      return true;
    });
  }

  /**
   * Too far behind: nothing is dropped silently — the reader is told, after what it already has, and
   * disconnected; it reconnects with its Last-Event-ID and resumes from history.
   */
  private tooSlow(): void {
    if (this.ended) return;
    countRefusal('slow_consumer');
    // Not started, what waits is the resumes of the URL's first channels (and their live events): sent,
    // with the event ids that carry them, the reconnect resumes after them instead of asking again.
    if (!this.started) this.start();
    this.queue = [];
    this.queued = 0;
    this.finish(4008, 'slow consumer: reconnect and resume', true);
  }

  disconnect(code: number, reason: string, reconnect: boolean): void {
    this.finish(code, reason, reconnect);
  }

  /** Ends the stream with a disconnect event (or an error status if it never started). */
  private finish(code: number, reason: string, reconnect: boolean): void {
    if (this.ended) return;
    const text = this.native
      ? `data: ${JSON.stringify({ op: 'disconnect', code, reason, reconnect })}\n\n`
      : `event: rt:disconnect\ndata: ${JSON.stringify({ code, reason, reconnect })}\n\n`;
    const pending = this.queue.join('');
    this.ended = true;
    this.queue = [];
    this.cleanup();
    if (this.state.aborted) return;
    this.state.aborted = true;
    if (!this.started) {
      const status = code === 1012 ? 503 : 409;
      this.res.cork(() => {
        this.res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json');
        for (const [k, v] of Object.entries(this.headers)) this.res.writeHeader(k, v);
        this.res.end(JSON.stringify({ error: { code: code === 1012 ? 'unavailable' : 'disconnected', message: reason } }));
      });
      return;
    }
    this.res.cork(() => {
      this.res.end(pending + text);
    });
  }

  /** The connection went away (or the request was refused): leave the hub and the session table. */
  cleanup(): void {
    this.ended = true;
    if (this.admittedIp !== undefined) {
      this.ctx.limits.release(this.admittedIp);
      this.admittedIp = undefined;
    }
    streams.delete(this);
    removeSession(this.sid);
    this.ctx.hub.remove(this);
  }

  receive(frames: ClientFrame[]): void {
    runFrames(this.ctx, this, frames, (r) => this.sendReply(r));
  }

  end(): void {
    this.finish(1000, 'closed by the client', false);
  }

  tick(now: number): void {
    // Ticks come at most keepalive/4 apart, so writing after 3/4 of it keeps every gap under the setting.
    if (this.started && !this.blocked && !this.ended && now - this.lastWrite >= this.keepaliveMs * 0.75) {
      this.rawWrite(': keep-alive\n\n');
    }
  }
}

function parseRequest(r: Req, maxChannels: number): { channels: string[]; since: (StreamPosition | undefined)[]; token?: string; format: 'events' | 'native' } {
  const q = queryParams(r.query);
  const channels: string[] = [];
  for (const v of q.getAll('channels')) for (const c of v.split(',')) if (c !== '') channels.push(c);
  for (const c of channels) assertChannel(c);
  assertDistinctChannels(channels);
  if (channels.length > maxChannels) throw new RtError('too_many_channels', `a connection may join at most ${maxChannels} channels`);
  const format = q.get('format') ?? 'events';
  if (format !== 'events' && format !== 'native') throw new RtError('bad_request', `format must be events or native, not ${JSON.stringify(format).slice(0, 40)}`);
  // A reconnecting EventSource sends the header; it is newer than anything in the URL.
  const lastId = r.headers['last-event-id'] ?? q.get('lastEventId') ?? '';
  if (lastId.length > 64 * 1024) throw new RtError('bad_request', 'Last-Event-ID is too long');
  const since = lastId === '' ? [] : parsePositions(lastId, channels.length);
  return { channels, since, token: tokenOf(r), format };
}

export function registerSse(app: TemplatedApp, ctx: ThreadContext): void {
  if (!ctx.config.transports.includes('sse')) return;
  enableSessions(ctx);
  const { hub } = ctx;

  app.get('/sse', (res: HttpResponse, req: HttpRequest) => {
    const r = snapshot(res, req);
    const state = { aborted: false };
    let client: SseClient | undefined;
    res.onAborted(() => {
      state.aborted = true;
      client?.cleanup();
    });
    let headers: Record<string, string> = {};
    try {
      headers = corsOrThrow(ctx, r);
      const p = parseRequest(r, ctx.config.maxChannelsPerConnection);
      const ip = requestIp(res, r);
      admitSession(ctx, ip, p.token);
      const c = new SseClient(ctx, res, state, p.channels, p.since, p.format, headers);
      client = c;
      c.admittedIp = ip;
      const authed = p.token !== undefined ? authenticate(ctx, c, p.token) : undefined;
      // A token verified asynchronously: the stream opens once it is known to be good.
      if (authed instanceof Promise) {
        authed.then(
          () => (state.aborted ? c.cleanup() : open(c, p)),
          (err) => {
            c.cleanup();
            sendError(res, state, err, headers);
          },
        );
        return;
      }
      open(c, p);
    } catch (err) {
      client?.cleanup();
      sendError(res, state, err, headers);
    }

    function open(c: SseClient, p: ReturnType<typeof parseRequest>): void {
      hub.add(c);
      addSession(c);
      streams.add(c);
      c.welcome();
      Promise.allSettled(p.channels.map((ch, i) => hub.subscribe(c, ch, p.since[i], undefined, (sr) => c.joined(ch, p.since[i], sr)))).then((results) => {
        const failed = results.findIndex((x) => x.status === 'rejected');
        if (failed < 0) return c.start();
        // One refused channel refuses the stream: a partial feed would look like a quiet channel.
        c.cleanup();
        const err = (results[failed] as PromiseRejectedResult).reason as RtError;
        const status = err instanceof RtError ? err.status : 500;
        sendError(res, state, new RtError(err.code ?? 'internal', `${p.channels[failed]}: ${err.message}`, status), headers);
      });
    }
  });

  registerSessionRoutes(app, ctx, '/sse', 'GET');
}
