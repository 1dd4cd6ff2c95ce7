// Opens one connection of a given transport carrying chosen request headers (as a reverse proxy would
// send them), and reports whether the server admitted it: status, error body, and how to close it.
import WebSocket from 'ws';

export type Transport = 'ws' | 'sse' | 'poll' | 'sio-polling' | 'sio-ws';
export const TRANSPORTS: readonly Transport[] = ['ws', 'sse', 'poll', 'sio-polling', 'sio-ws'];

export interface Opened {
  status: number;
  body: any;
  close(): void;
}

function wsOpen(url: string, headers: Record<string, string>): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    ws.once('open', () => resolve({ status: 101, body: null, close: () => ws.terminate() }));
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

async function httpOpen(url: string, headers: Record<string, string>, stream: boolean): Promise<Opened> {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  if (res.ok && stream) {
    return { status: res.status, body: null, close: () => abort.abort() };
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* Engine.IO's open packet is text */
  }
  return { status: res.status, body, close: res.ok ? sessionCloser(url, body, text) : () => {} };
}

export function openAs(port: number, transport: Transport, headers: Record<string, string>): Promise<Opened> {
  const http = `http://127.0.0.1:${port}`;
  switch (transport) {
    case 'ws':
      return wsOpen(`ws://127.0.0.1:${port}/ws`, headers);
    case 'sio-ws':
      return wsOpen(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, headers);
    case 'sse':
      return httpOpen(`${http}/sse?channels=proxy-test`, headers, true);
    case 'poll':
      return httpOpen(`${http}/poll`, headers, false);
    case 'sio-polling':
      return httpOpen(`${http}/socket.io/?EIO=4&transport=polling`, headers, false);
  }
}

/** The refusal's error code, whichever error shape the transport answers with. */
export function refusalCode(o: Opened): string | undefined {
  return o.body?.error?.code ?? undefined;
}

export function refusalMessage(o: Opened): string {
  return String(o.body?.error?.message ?? o.body?.message ?? '');
}
