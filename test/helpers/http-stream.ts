// Raw HTTP for the SSE and long-polling tests: every request on a fresh connection (agent: false), so
// consecutive requests are handed to different shards, and an SSE reader that sees exactly the bytes
// the server wrote (its own parser, independent of the client library's).
import http from 'node:http';

export interface RawEvent {
  id?: string;
  event: string;
  data: string;
  json?: any;
}

export function parseEvents(text: string): { events: RawEvent[]; comments: number } {
  const events: RawEvent[] = [];
  let comments = 0;
  for (const block of text.split('\n\n')) {
    if (block === '') continue;
    const e: RawEvent = { event: 'message', data: '' };
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) comments++;
      else if (line.startsWith('id: ')) e.id = line.slice(4);
      else if (line.startsWith('event: ')) e.event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length === 0) continue;
    e.data = data.join('\n');
    try {
      e.json = JSON.parse(e.data);
    } catch {
      /* not JSON */
    }
    events.push(e);
  }
  return { events, comments };
}

export class SseStream {
  raw = '';
  status = 0;
  headers: http.IncomingHttpHeaders = {};
  ended = false;
  private req!: http.ClientRequest;
  private waiters: (() => void)[] = [];

  static open(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
    const s = new SseStream();
    return new Promise((resolve, reject) => {
      s.req = http.get(url, { agent: false, headers }, (res) => {
        s.status = res.statusCode ?? 0;
        s.headers = res.headers;
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          s.raw += d;
          s.wake();
        });
        res.on('end', () => {
          s.ended = true;
          s.wake();
        });
        res.on('error', () => {});
        resolve(s);
      });
      s.req.on('error', (err) => {
        s.ended = true;
        s.wake();
        reject(err);
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Only complete events (the text up to the last blank line). */
  get events(): RawEvent[] {
    return parseEvents(this.raw.slice(0, this.raw.lastIndexOf('\n\n') + 2)).events;
  }

  get comments(): number {
    return parseEvents(this.raw).comments;
  }

  /** Waits until `pred` holds over the events seen so far. */
  async until<T>(pred: (events: RawEvent[]) => T | undefined | false, timeoutMs = 8000, what = 'events'): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred(this.events);
      if (v) return v;
      if (this.ended) throw new Error(`stream ended while waiting for ${what}; got: ${this.raw.slice(-600)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got: ${this.raw.slice(-600)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async waitEnd(timeoutMs = 8000): Promise<void> {
    await this.until(() => false, timeoutMs, 'the end of the stream').catch((err) => {
      if (!this.ended) throw err;
    });
  }

  close(): void {
    this.req.destroy();
  }
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Header names and values as sent, repeated ones included. */
  rawHeaders: string[];
  text: string;
  json: any;
}

/** One request on its own connection. */
export function request(method: string, url: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any;
        try {
          json = JSON.parse(text);
        } catch {
          /* keep text */
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** Polls `check` until it returns something truthy (state that changes asynchronously, not timing). */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, what: string | (() => string), timeoutMs = 10000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
