// A raw WebSocket reader for the protocol conformance tests: messages in arrival order, awaited one by
// one, and the close — what the official Engine.IO / Socket.IO test suites check on the wire.
import WebSocket from 'ws';

export type WireMessage = string | Buffer;

export class RawSocket {
  readonly ws: WebSocket;
  private readonly inbox: WireMessage[] = [];
  private waiter?: () => void;
  closed = false;
  /** HTTP status when the server refused the upgrade. */
  refusedWith?: number;
  readonly opened: Promise<void>;
  readonly closing: Promise<void>;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.inbox.push(isBinary ? data : data.toString());
      this.wake();
    });
    this.ws.on('unexpected-response', (_req, res) => {
      this.refusedWith = res.statusCode;
      res.resume();
      this.ws.terminate();
    });
    this.ws.on('error', () => {});
    this.opened = new Promise((resolve) => this.ws.once('open', () => resolve()));
    this.closing = new Promise((resolve) =>
      this.ws.once('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      }),
    );
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** The next message (pings included unless `skipPings`). */
  async next(opts: { skipPings?: boolean; timeoutMs?: number } = {}): Promise<WireMessage> {
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    for (;;) {
      while (this.inbox.length > 0) {
        const m = this.inbox.shift()!;
        if (opts.skipPings && m === '2') continue;
        return m;
      }
      if (this.closed) throw new Error('socket closed while waiting for a message');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a message');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  /** Resolves when the server closed (or refused) the socket; rejects after `timeoutMs`. */
  async waitClose(timeoutMs = 5000): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.closing, new Promise((_, rej) => (t = setTimeout(() => rej(new Error('socket not closed')), timeoutMs)))]);
    clearTimeout(t);
  }

  send(m: string | Uint8Array): void {
    this.ws.send(m);
  }

  close(): void {
    this.ws.close();
  }
}
