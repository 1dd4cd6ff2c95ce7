/**
 * A minimal WebSocket client for the fan-out benchmark's subscribers (BENCH_CLIENT=raw): a `net`
 * socket, the RFC 6455 handshake, and a frame reader that finds frame boundaries without copying or
 * decoding payloads. One Node process reads 1,000 subscribers' sockets; with the `ws` package each
 * delivery costs the client 2–3 µs (a Buffer, a UTF-8 check, an event), the client cannot keep up at a
 * backend's pace, and the server's writes then measure the client's backlog (docs/benchmarks.md). This
 * client hands the caller a view of each text frame and lets it decide what to parse.
 *
 * Bench only: no fragmentation (servers under test send whole frames), no extensions, no TLS.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';

/** BENCH_CLIENT=raw: the suites' subscribers use this client instead of `ws` / `socket.io-client`. */
export const rawClient = process.env.BENCH_CLIENT === 'raw';

export interface RawSocket {
  /** Sends one text frame (masked with a zero key: valid per RFC 6455 §5.3, and free to apply). */
  send(text: string): void;
  close(): void;
}

/** Called with each text frame's payload as `buf[start, end)`; the view is valid only during the call. */
export type OnFrame = (buf: Buffer, start: number, end: number, sock: RawSocket) => void;

function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  out.writeUInt32BE(0, head); // the mask key: zero, so the payload goes as it is
  payload.copy(out, head + 4);
  return out;
}

export function connectRaw(port: number, path: string, onFrame: OnFrame): Promise<RawSocket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const api: RawSocket = {
      send: (text) => void s.write(frame(0x1, Buffer.from(text))),
      close: () => s.destroy(),
    };
    let pending: Buffer | undefined;
    let open = false;
    s.once('connect', () => {
      const key = randomBytes(16).toString('base64');
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    // Every error, not only the first: a reset after the handshake would otherwise be an unhandled 'error' (rejecting a settled promise does nothing).
    s.on('error', reject);
    s.on('data', (chunk: Buffer) => {
      let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      pending = undefined;
      let at = 0;
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          pending = buf;
          return;
        }
        if (!buf.toString('latin1', 0, 12).startsWith('HTTP/1.1 101')) {
          reject(new Error(`handshake refused: ${buf.toString('latin1', 0, end)}`));
          s.destroy();
          return;
        }
        open = true;
        at = end + 4;
        resolve(api);
      }
      const len = buf.length;
      while (at + 2 <= len) {
        const op = buf[at]! & 0x0f;
        let n = buf[at + 1]! & 0x7f;
        let h = 2;
        if (n === 126) {
          if (at + 4 > len) break;
          n = buf.readUInt16BE(at + 2);
          h = 4;
        } else if (n === 127) {
          if (at + 10 > len) break;
          n = Number(buf.readBigUInt64BE(at + 2));
          h = 10;
        }
        if (at + h + n > len) break;
        const start = at + h;
        if (op === 0x1 || op === 0x2) onFrame(buf, start, start + n, api);
        else if (op === 0x9) s.write(frame(0xa, buf.subarray(start, start + n)));
        else if (op === 0x8) s.end();
        at = start + n;
      }
      if (at < len) pending = buf.subarray(at);
    });
  });
}

/** How a subscriber speaks a server's protocol over this client. */
export interface RawProtocol {
  path: string;
  /** The first bytes of every delivery frame. */
  delivery: Buffer;
  /** A delivery's send time (its payload's `t`), from the frame's text. */
  sentAt(text: string): number;
  /** Any other frame: answers it, and calls `subscribed` once the subscription is confirmed. */
  control(text: string, sock: RawSocket, subscribed: () => void): void;
}

/**
 * `n` subscribers, 200 connecting at a time, each subscribed before this resolves. `onMessage(t)` once
 * per delivery; `t`, the send time, on one delivery in eight per socket (parsed only then).
 */
export async function subscribeRaw(port: number, n: number, proto: RawProtocol, onMessage: (t?: number) => void): Promise<RawSocket[]> {
  const socks: RawSocket[] = [];
  const len = proto.delivery.length;
  for (let i = 0; i < n; i += 200) {
    const batch = Array.from({ length: Math.min(200, n - i) }, async () => {
      let subscribed!: () => void;
      const done = new Promise<void>((r) => (subscribed = r));
      let seen = 0;
      const s = await connectRaw(port, proto.path, (buf, start, end, sock) => {
        // A frame shorter than the prefix (an Engine.IO ping, "2") can end the buffer: compare() would throw.
        if (end - start >= len && buf.compare(proto.delivery, 0, len, start, start + len) === 0) {
          onMessage((seen++ & 7) === 0 ? proto.sentAt(buf.toString('utf8', start, end)) : undefined);
        } else proto.control(buf.toString('utf8', start, end), sock, subscribed);
      });
      await done;
      return s;
    });
    socks.push(...(await Promise.all(batch)));
  }
  return socks;
}
