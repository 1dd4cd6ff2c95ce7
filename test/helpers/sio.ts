// socket.io-client helpers for the gateway tests: connect and wait, wait for events, raw Engine.IO.
import net from 'node:net';
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import WebSocket from 'ws';

export type SioOptions = Partial<ManagerOptions & SocketOptions>;

/** Connects and resolves once the namespace is joined; rejects with the connect_error. */
export async function sioConnect(t: { teardown(fn: () => unknown): void }, url: string, opts: SioOptions = {}): Promise<Socket> {
  const s = io(url, { reconnection: false, forceNew: true, timeout: 5000, ...opts });
  t.teardown(() => s.close());
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('connect_error', reject);
  });
  return s;
}

/** Resolves with the arguments of the next `event` on `s` (optionally the first matching `pred`). */
export function nextEvent(s: { on(ev: string, fn: (...a: any[]) => void): unknown; off(ev: string, fn: (...a: any[]) => void): unknown }, event: string, pred: (...args: any[]) => boolean = () => true, timeoutMs = 5000): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.off(event, fn);
      reject(new Error(`timed out waiting for ${event}`));
    }, timeoutMs);
    const fn = (...args: any[]) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      s.off(event, fn);
      resolve(args);
    };
    s.on(event, fn);
  });
}

/** Resolves once the client's Engine.IO transport is a WebSocket. */
export async function upgraded(s: Socket): Promise<void> {
  const engine = s.io.engine;
  if (engine.transport.name === 'websocket') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no upgrade')), 5000);
    engine.once('upgrade', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Opens one TCP connection to the server and keeps it until teardown. With two shards and the
 * round-robin acceptor, one extra connection moves the next socket (e.g. an upgrade's WebSocket) to
 * the other shard.
 */
export function spareConnection(t: { teardown(fn: () => unknown): void }, port: number): void {
  const c = net.connect(port, '127.0.0.1');
  c.on('error', () => {});
  t.teardown(() => c.destroy());
}

export { freePort } from './redis.js';

/** A fresh TCP connection per request, so consecutive requests alternate between the two shards. */
export async function http(url: string, init: { method?: string; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, { method: init.method ?? 'GET', body: init.body, headers: { connection: 'close', ...init.headers } });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

export async function rawHandshake(base: string): Promise<{ sid: string; pingInterval: number; pingTimeout: number; maxPayload: number; upgrades: string[] }> {
  const r = await http(`${base}/socket.io/?EIO=4&transport=polling`);
  if (r.status !== 200 || r.body[0] !== '0') throw new Error(`handshake failed: ${r.status} ${r.body}`);
  return JSON.parse(r.body.slice(1));
}

/** A raw Engine.IO WebSocket that records text/binary messages. */
export class RawWs {
  readonly ws: WebSocket;
  readonly messages: Array<string | Buffer> = [];
  private waiters: Array<() => void> = [];
  closed?: { code: number; reason: string };

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data, isBinary) => {
      this.messages.push(isBinary ? (data as Buffer) : data.toString());
      this.wake();
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    this.ws.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) return resolve();
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      this.ws.once('close', () => reject(new Error('closed before opening')));
    });
  }

  /** Next message matching pred (consumed), waiting up to timeoutMs. */
  async next(pred: (m: string | Buffer) => boolean = () => true, timeoutMs = 5000): Promise<string | Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex(pred);
      if (i >= 0) return this.messages.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`closed (${this.closed.code}) while waiting; got ${JSON.stringify(this.messages.map(String))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(this.messages.map(String))}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }

  async waitClose(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('did not close');
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
    return this.closed;
  }

  send(data: string | Buffer): void {
    this.ws.send(data);
  }

  close(): void {
    this.ws.close();
  }
}
