/**
 * Cost of custom channel actors (docs/benchmarks.md, "Channel actors"):
 * - a hook per message: client publishes to a plain channel vs a channel whose actor's onMessage
 *   transforms each message (bench/actor-fixtures/relay.ts), server CPU and round trip per message;
 * - a timer-driven broadcast: actors/cursors.ts with many clients moving at high rate, coalesced to
 *   at most 20 broadcasts a second per channel; server CPU per move and broadcasts per second.
 */
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { BenchServer, connectMany, now, round } from './lib.js';

const folder = fileURLToPath(new URL('./actor-fixtures', import.meta.url));

type Row = Record<string, unknown>;

function onFrames(ws: WebSocket, fn: (f: any) => void): void {
  ws.on('message', (d) => fn(JSON.parse(d.toString())));
}

/** Publishes `n` messages from `pub`, `window` in flight at a time; resolves when every reply is in. */
function publishMany(pub: WebSocket, channel: string, n: number, window: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let done = 0;
    const send = () => {
      while (sent < n && sent - done < window) pub.send(JSON.stringify({ op: 'publish', ref: ++sent, channel, event: 'm', data: sent }));
    };
    onFrames(pub, (f) => {
      if (f.op !== 'reply' || typeof f.ref !== 'number') return;
      if (!f.ok) return reject(new Error(`publish refused: ${JSON.stringify(f.error)}`));
      if (++done === n) resolve();
      else send();
    });
    send();
  });
}

async function subscribe(ws: WebSocket, channel: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const ref = Math.floor(Math.random() * 1e9);
    const fn = (d: WebSocket.RawData) => {
      const f = JSON.parse(d.toString());
      if (f.op !== 'reply' || f.ref !== ref) return;
      ws.off('message', fn);
      if (f.ok) resolve();
      else reject(new Error(JSON.stringify(f.error)));
    };
    ws.on('message', fn);
    ws.send(JSON.stringify({ op: 'subscribe', ref, channel }));
  });
}

async function hookCost(server: BenchServer, url: string, n: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const channel of ['plain-bench', 'relay-bench']) {
    const [pub, sub] = await connectMany(url, 2);
    await subscribe(pub!, channel);
    await subscribe(sub!, channel);
    let received = 0;
    const all = new Promise<void>((resolve) => onFrames(sub!, (f) => f.op === 'message' && ++received === n && resolve()));
    await publishMany(pub!, channel, Math.min(1000, n), 200); // warm-up (not counted by `received` past n)
    received = 0;
    const cpu0 = await server.cpuMicros();
    const t0 = now();
    await publishMany(pub!, channel, n, 200);
    await all;
    const ms = now() - t0;
    const cpu = (await server.cpuMicros()) - cpu0;
    rows.push({ bench: 'actors', case: channel.startsWith('relay') ? 'actor onMessage' : 'plain channel', messages: n, msgPerSec: round((n / ms) * 1000, 0), serverCpuUsPerMsg: round(cpu / n, 2) });
    pub!.close();
    sub!.close();
  }
  const [plain, actor] = rows as Array<{ serverCpuUsPerMsg: number }>;
  rows.push({ bench: 'actors', case: 'hook cost', serverCpuUsPerMsg: round(actor!.serverCpuUsPerMsg - plain!.serverCpuUsPerMsg, 2) });
  return rows;
}

async function cursors(server: BenchServer, url: string, clients: number, perClientHz: number, seconds: number): Promise<Row> {
  const channel = 'cursors-bench';
  const socks = await connectMany(url, clients + 1);
  const observer = socks.pop()!;
  for (const s of socks) await subscribe(s, channel);
  await subscribe(observer, channel);
  const stamps: number[] = [];
  onFrames(observer, (f) => f.op === 'message' && f.event === 'cursors' && stamps.push(now()));
  const cpu0 = await server.cpuMicros();
  const t0 = now();
  let moves = 0;
  const timers = socks.map((s, i) =>
    setInterval(() => {
      s.send(JSON.stringify({ op: 'publish', ref: ++moves, channel, event: 'move', data: { x: moves, y: i } }));
    }, 1000 / perClientHz),
  );
  await new Promise((r) => setTimeout(r, seconds * 1000));
  for (const t of timers) clearInterval(t);
  const ms = now() - t0;
  await new Promise((r) => setTimeout(r, 200));
  const cpu = (await server.cpuMicros()) - cpu0;
  for (const s of [...socks, observer]) s.close();
  const inWindow = stamps.filter((s) => s - t0 <= ms);
  return {
    bench: 'actors',
    case: 'cursor coalescing (timer every 50 ms)',
    clients,
    movesPerSec: round((moves / ms) * 1000, 0),
    broadcastsPerSec: round((inWindow.length / ms) * 1000, 1),
    serverCpuUsPerMove: round(cpu / moves, 2),
  };
}

export async function benchActors({ quick }: { quick: boolean }): Promise<Row[]> {
  const server = await BenchServer.start('rt', 1, { actors: folder, clientPublish: 'all', rateLimit: 0 });
  try {
    const url = `ws://127.0.0.1:${server.port}/ws`;
    const rows = await hookCost(server, url, quick ? 20_000 : 100_000);
    rows.push(await cursors(server, url, quick ? 20 : 100, 60, quick ? 2 : 5));
    return rows;
  } finally {
    await server.stop();
  }
}
