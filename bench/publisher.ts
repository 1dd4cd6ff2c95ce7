/**
 * The backend of the fan-out benchmarks, in a process of its own as a Laravel or Node backend is:
 * publishes to channel `bench` at a fixed rate or as fast as 32 concurrent requests allow, then exits —
 * through a server's Pusher HTTP API with the official `pusher` SDK (bench/pusher.ts), or as plain HTTP
 * POSTs of `{ channel, event, data }` with keep-alive (bench/socketio.ts). Kept apart from the 1,000
 * subscribers so that their receiving does not slow the publisher down (which, in one event loop, it
 * did: the burst pace was bounded by the clients, not by the servers).
 *
 *   node dist/bench/publisher.js '{"port":…,"via":{…},"pace":{…},"size":64}'
 */
import { fork } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import PusherServer from 'pusher';
import { now } from './lib.js';

export type Pace = { kind: 'rate'; rate: number; seconds: number } | { kind: 'burst'; count: number };

export type Via =
  | { kind: 'pusher'; app: { id: string; key: string; secret: string } }
  /** POST `path` with `headers` (e.g. an API key), body `{"channel":"bench","event":"m","data":…}`. */
  | { kind: 'http'; path: string; headers: Record<string, string> };

export interface PublisherSpec {
  port: number;
  via: Via;
  pace: Pace;
  size: number;
  /** The channel published to (default `bench`; the warm-ups use side channels). */
  channel?: string;
}

type Send = (body: string) => Promise<unknown>;

function sender(port: number, via: Via, channel: string): Send {
  if (via.kind === 'pusher') {
    const backend = new PusherServer({ appId: via.app.id, key: via.app.key, secret: via.app.secret, host: '127.0.0.1', port: String(port), useTLS: false } as never);
    return (data) => backend.trigger(channel, 'm', data);
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  return (data) =>
    new Promise<void>((resolve, reject) => {
      const body = `{"channel":${JSON.stringify(channel)},"event":"m","data":${data}}`;
      const req = http.request({ host: '127.0.0.1', port, path: via.path, method: 'POST', agent, headers: { ...via.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`publish: HTTP ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
}

/** A `size`-byte JSON payload carrying its sequence number and send time (epoch ms, comparable across processes). */
export function payload(size: number, seq: number): string {
  const head = JSON.stringify({ seq, t: now(), p: '' });
  return head.slice(0, -2) + 'x'.repeat(Math.max(0, size - head.length)) + '"}';
}

export async function publish(spec: PublisherSpec): Promise<void> {
  const { pace, size } = spec;
  const send = sender(spec.port, spec.via, spec.channel ?? 'bench');
  if (pace.kind === 'rate') {
    const count = Math.round(pace.rate * pace.seconds);
    const t0 = now();
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const wait = t0 + (i * 1000) / pace.rate - now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      sends.push(send(payload(size, i)));
    }
    await Promise.all(sends);
    return;
  }
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < pace.count) await send(payload(size, next++));
  };
  await Promise.all(Array.from({ length: 32 }, lane));
}

/** Runs `spec` in a child process (this file); resolves when every publish was answered. */
export function runPublisher(spec: PublisherSpec): Promise<void> {
  const child = fork(fileURLToPath(import.meta.url), [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`publisher exited with ${code}`))));
  });
}

if (process.argv[2] && import.meta.url === `file://${process.argv[1]}`) {
  await publish(JSON.parse(process.argv[2]) as PublisherSpec);
  process.exit(0);
}
