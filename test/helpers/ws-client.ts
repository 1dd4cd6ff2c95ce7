// A small native-protocol client over the `ws` package, for tests: request/reply by ref, and waiting
// for pushed frames.
import WebSocket from 'ws';
import { pack, unpack } from 'msgpackr';
import { Inbox } from './inbox.js';

export type Frame = Record<string, any>;

export class TestClient {
  readonly ws: WebSocket;
  private readonly inbox = new Inbox<Frame>((frames) => `timed out waiting for a frame; got: ${JSON.stringify(frames.slice(-5))}`);
  readonly frames = this.inbox.items;
  private ref = 0;
  closed?: { code: number; reason: string };
  private closeWaiters: ((c: { code: number; reason: string }) => void)[] = [];
  welcome!: Frame;

  constructor(url: string, readonly msgpack = false, protocols?: string[]) {
    this.ws = new WebSocket(url, protocols);
    this.ws.on('message', (data, isBinary) => {
      this.inbox.add(isBinary ? (unpack(data as Buffer) as Frame) : (JSON.parse(data.toString()) as Frame));
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const w of this.closeWaiters) w(this.closed);
    });
  }

  static async connect(url: string, opts: { msgpack?: boolean; protocols?: string[] } = {}): Promise<TestClient> {
    const c = new TestClient(url, opts.msgpack, opts.protocols);
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve());
      c.ws.once('error', reject);
      c.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    // A refusal after the upgrade (a token checked off-thread) is an error frame, then close 4001.
    const first = await c.next((f) => f.op === 'welcome' || (f.op === 'error' && f.ref === undefined));
    if (first.op === 'error') throw new Error(`refused after the upgrade: ${first.error.code}: ${first.error.message}`);
    c.welcome = first;
    return c;
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  send(frame: Frame): void {
    this.ws.send(this.msgpack ? pack(frame) : JSON.stringify(frame));
  }

  request(frame: Frame, timeoutMs = 5000): Promise<Frame> {
    const ref = ++this.ref;
    const p = this.next((f) => f.op === 'reply' && f.ref === ref, timeoutMs);
    this.send({ ...frame, ref });
    return p;
  }

  /** Resolves with the first frame (already received or future) matching pred. */
  next(pred: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    return this.inbox.next(pred, timeoutMs);
  }

  messages(channel?: string): Frame[] {
    return this.frames.filter((f) => f.op === 'message' && (channel === undefined || f.channel === channel));
  }

  async waitForMessages(channel: string, count: number, timeoutMs = 10000): Promise<Frame[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages(channel).length < count) {
      if (Date.now() > deadline) throw new Error(`expected ${count} messages on ${channel}, got ${this.messages(channel).length}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.messages(channel);
  }

  waitClose(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    if (this.closed) return Promise.resolve(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('socket did not close')), timeoutMs);
      this.closeWaiters.push((c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
  }

  close(): void {
    this.ws.close();
  }
}
