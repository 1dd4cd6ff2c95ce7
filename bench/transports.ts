/**
 * The native transports side by side, same server process, same run: WebSocket (/ws), Server-Sent
 * Events (/sse) and long-polling (/poll). For each: deliveries/s seen by the clients when the server
 * publishes as fast as it can be asked to, and publish→deliver latency percentiles at a moderate rate
 * (where no transport is saturated, so the figure is the transport's, not a queue's).
 *
 *   node dist/bench/transports.js [--quick]     prints one JSON line per figure
 *
 * The clients are minimal hand-written ones (not the client library), so client-side overhead is small
 * and the same for each transport; they share the machine with the server, as in every bench here.
 */
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import type WebSocket from 'ws';
import { BenchServer, connectMany, now, percentile, round } from './lib.js';

type Transport = 'ws' | 'sse' | 'polling';
type OnMessage = (data: { seq: number; t: number }) => void;
interface Subs { close(): void }

async function wsSubscribers(port: number, n: number, channel: string, onMessage: OnMessage): Promise<Subs> {
  const pending: Promise<void>[] = [];
  const sockets = await connectMany(`ws://127.0.0.1:${port}/ws`, n, (ws: WebSocket) => {
    let subscribed!: () => void;
    pending.push(new Promise<void>((r) => (subscribed = r)));
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString());
      if (f.op === 'message') onMessage(f.data);
      else if (f.op === 'reply') subscribed();
      else if (f.op === 'welcome') ws.send(JSON.stringify({ op: 'subscribe', channel, ref: 1 }));
    });
  });
  await Promise.all(pending);
  return { close: () => sockets.forEach((s) => s.terminate()) };
}

/** SSE in the default (events) format, as EventSource and curl read it. */
async function sseSubscribers(port: number, n: number, channel: string, onMessage: OnMessage): Promise<Subs> {
  const reqs: http.ClientRequest[] = [];
  await Promise.all(
    Array.from({ length: n }, () => new Promise<void>((resolve, reject) => {
      const req = http.get(`http://127.0.0.1:${port}/sse?channels=${channel}`, { agent: false }, (res) => {
        res.setEncoding('utf8');
        let buf = '';
        res.on('data', (chunk: string) => {
          buf += chunk;
          let end: number;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            if (block.includes('\nevent: m\n')) onMessage(JSON.parse(block.slice(block.indexOf('\ndata: ') + 7)).data);
            else if (block.includes('event: rt:subscribed')) resolve();
          }
        });
        res.on('error', () => {});
      });
      req.on('error', reject);
      reqs.push(req);
    })),
  );
  return { close: () => reqs.forEach((r) => r.destroy()) };
}

async function pollingSubscribers(port: number, n: number, channel: string, onMessage: OnMessage): Promise<Subs> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: n * 2 + 4 });
  let stopped = false;
  const call = (method: string, path: string, body?: string) =>
    new Promise<any>((resolve, reject) => {
      const req = http.request(`http://127.0.0.1:${port}${path}`, { method, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())));
      });
      req.on('error', reject);
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: n }, async () => {
      const opened = await call('GET', '/poll');
      const sid = opened.frames[0].session as string;
      let ack = opened.seq as number;
      await call('POST', `/poll?sid=${sid}`, JSON.stringify({ op: 'subscribe', channel, ref: 1 }));
      let subscribed!: () => void;
      const ready = new Promise<void>((r) => (subscribed = r));
      void (async () => {
        while (!stopped) {
          let answer: { seq: number; frames: any[] };
          try {
            answer = await call('GET', `/poll?sid=${sid}&ack=${ack}`);
          } catch {
            return;
          }
          ack = answer.seq;
          for (const f of answer.frames) {
            if (f.op === 'message') onMessage(f.data);
            else if (f.op === 'reply') subscribed();
          }
        }
      })();
      await ready;
    }),
  );
  return {
    close: () => {
      stopped = true;
      agent.destroy();
    },
  };
}

const SUBSCRIBE = { ws: wsSubscribers, sse: sseSubscribers, polling: pollingSubscribers };

interface Load { subscribers: number; latencyRate: number; latencyCount: number; burstRate: number; burstCount: number; size: number }

async function measure(server: BenchServer, channel: string, subscribers: number, rate: number, count: number, size: number, state: { delivered: number; lat: number[] }) {
  state.delivered = 0;
  state.lat = [];
  const expected = count * subscribers;
  const t0 = now();
  await server.publish(channel, rate, count, size);
  const deadline = Date.now() + 15000;
  while (state.delivered < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  const elapsed = (now() - t0) / 1000;
  const lat = state.lat.sort((a, b) => a - b);
  return { delivered: state.delivered, expected, deliveries_per_s: Math.round(state.delivered / elapsed), p50: round(percentile(lat, 50), 3), p99: round(percentile(lat, 99), 3) };
}

export async function benchTransports(opts: { quick: boolean }): Promise<Record<string, unknown>[]> {
  const load: Load = opts.quick
    ? { subscribers: 20, latencyRate: 200, latencyCount: 200, burstRate: 20000, burstCount: 4000, size: 100 }
    : { subscribers: 100, latencyRate: 500, latencyCount: 2500, burstRate: 50000, burstCount: 20000, size: 100 };
  const server = await BenchServer.start('rt', 2, { pollTimeout: 25, maxBackpressure: 64 * 1024 * 1024 });
  const rows: Record<string, unknown>[] = [];
  try {
    for (const transport of ['ws', 'sse', 'polling'] as Transport[]) {
      const channel = `bench-${transport}`;
      const state = { delivered: 0, lat: [] as number[] };
      const subs = await SUBSCRIBE[transport](server.port, load.subscribers, channel, (d) => {
        state.delivered++;
        state.lat.push(now() - d.t);
      });
      await new Promise((r) => setTimeout(r, 200));
      const latency = await measure(server, channel, load.subscribers, load.latencyRate, load.latencyCount, load.size, state);
      const burst = await measure(server, channel, load.subscribers, load.burstRate, load.burstCount, load.size, state);
      subs.close();
      rows.push({
        bench: 'transports',
        transport,
        subscribers: load.subscribers,
        payload_bytes: load.size,
        deliveries_per_s: burst.deliveries_per_s,
        delivered: burst.delivered,
        expected: burst.expected,
        latency_rate_per_s: load.latencyRate,
        latency_ms_p50: latency.p50,
        latency_ms_p99: latency.p99,
        latency_delivered: latency.delivered,
      });
    }
  } finally {
    await server.stop();
  }
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  for (const rec of await benchTransports({ quick })) console.log(JSON.stringify(rec));
}
