// Opens one connection of a given transport carrying chosen request headers (as a reverse proxy would
// send them), and reports whether the server admitted it: status, error body, and how to close it.
import http from 'node:http';
import WebSocket from 'ws';

export type Transport = 'ws' | 'sse' | 'poll' | 'sio-polling' | 'sio-ws' | 'pusher';
export const TRANSPORTS: readonly Transport[] = ['ws', 'sse', 'poll', 'sio-polling', 'sio-ws', 'pusher'];
/** Server options that turn the Pusher gateway on for openAs(…, 'pusher'). */
export const PUSHER_OPTIONS = { pusherAppId: '1', pusherKey: 'proxy-key', pusherSecret: 'proxy-secret' };

/**
 * Pusher refuses over the socket (pusher:error, then close 4100 "Over capacity"), as pusher-js expects;
 * reported here as 429 with the message, like the other transports' HTTP refusals.
 */
function pusherOpen(port: number, headers: Record<string, string | string[]>, localAddress?: string): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${PUSHER_OPTIONS.pusherKey}?protocol=7`, { headers, perMessageDeflate: false, localAddress });
    ws.once('message', (raw) => {
      const f = JSON.parse(raw.toString());
      if (f.event === 'pusher:connection_established') return resolve({ status: 101, body: null, close: () => ws.terminate() });
      const data = typeof f.data === 'string' ? JSON.parse(f.data) : f.data;
      resolve({ status: data?.code === 4100 ? 429 : 400, body: { error: { code: String(data?.code), message: data?.message } }, close: () => ws.terminate() });
    });
    ws.once('error', reject);
  });
}

export interface Opened {
  status: number;
  body: any;
  /** Native /ws: a token the server checks asynchronously (RS256/ES256, JWKS) is refused after the upgrade, with close 4001. */
  closeCode?: number;
  close(): void;
}

function wsOpen(url: string, headers: Record<string, string | string[]>, localAddress?: string): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false, localAddress });
    const native = new URL(url).pathname === '/ws';
    ws.once('open', () => {
      if (!native) return resolve({ status: 101, body: null, close: () => ws.terminate() });
      // Admitted once the welcome comes; an error frame instead is a refusal, followed by the close.
      ws.once('message', (raw) => {
        const f = JSON.parse(raw.toString());
        if (f.op === 'welcome') return resolve({ status: 101, body: null, close: () => ws.terminate() });
        ws.once('close', (code) => resolve({ status: 101, body: { error: f.error }, closeCode: code, close: () => {} }));
      });
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d));
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* keep the text */
        }
        resolve({ status: res.statusCode ?? 0, body, close: () => {} });
      });
    });
    ws.once('error', (err) => reject(err));
  });
}

/** Ends a session-based connection the way its client would, so its per-IP slot is released. */
function sessionCloser(url: string, body: any, text: string): () => void {
  if (url.includes('/poll')) {
    const sid = body?.frames?.[0]?.session;
    return () => void fetch(`${url}?sid=${encodeURIComponent(sid)}`, { method: 'DELETE' }).catch(() => {});
  }
  const sid = /"sid":"([^"]+)"/.exec(text)?.[1];
  return () => void fetch(`${url}&sid=${encodeURIComponent(sid ?? '')}`, { method: 'POST', body: '1', headers: { 'content-type': 'text/plain' } }).catch(() => {});
}

function httpOpen(url: string, headers: Record<string, string | string[]>, stream: boolean, localAddress?: string): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, localAddress, agent: false }, (res) => {
      const status = res.statusCode ?? 0;
      if (status < 300 && stream) return resolve({ status, body: null, close: () => req.destroy() });
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve(answered(url, status, text)));
    });
    req.on('error', reject);
  });
}

function answered(url: string, status: number, text: string): Opened {
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* Engine.IO's open packet is text */
  }
  return { status, body, close: status < 300 ? sessionCloser(url, body, text) : () => {} };
}

/** `from`: the local address to connect from (any of 127.0.0.0/8), so tests can be several peers. */
export function openAs(port: number, transport: Transport, headers: Record<string, string | string[]>, from?: string): Promise<Opened> {
  const base = `http://127.0.0.1:${port}`;
  switch (transport) {
    case 'ws':
      return wsOpen(`ws://127.0.0.1:${port}/ws`, headers, from);
    case 'sio-ws':
      return wsOpen(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, headers, from);
    case 'sse':
      return httpOpen(`${base}/sse?channels=proxy-test`, headers, true, from);
    case 'poll':
      return httpOpen(`${base}/poll`, headers, false, from);
    case 'sio-polling':
      return httpOpen(`${base}/socket.io/?EIO=4&transport=polling`, headers, false, from);
    case 'pusher':
      return pusherOpen(port, headers, from);
  }
}

/** The refusal's error code, whichever error shape the transport answers with. */
export function refusalCode(o: Opened): string | undefined {
  return o.body?.error?.code ?? undefined;
}

export function refusalMessage(o: Opened): string {
  return String(o.body?.error?.message ?? o.body?.message ?? '');
}
