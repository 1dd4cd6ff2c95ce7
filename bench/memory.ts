/** Server memory per idle connection: RSS growth of the server process for N idle WebSockets. */
import { BenchServer, connectMany, round, type ServerKind } from './lib.js';

async function perConnection(kind: ServerKind, n: number): Promise<Record<string, unknown>> {
  const server = await BenchServer.start(kind);
  try {
    // A few warm-up connections so one-time allocations are not charged to the measured ones.
    const warm = await connectMany(`ws://127.0.0.1:${server.port}/ws`, 50);
    await new Promise((r) => setTimeout(r, 300));
    const before = await server.memory();
    const rssBefore = await server.rss();
    const sockets = await connectMany(`ws://127.0.0.1:${server.port}/ws`, n);
    await new Promise((r) => setTimeout(r, 500));
    // First as the process is (what the target is about), then after a full GC in every thread.
    const rssAfter = await server.rss();
    const after = await server.memory();
    for (const s of [...sockets, ...warm]) s.terminate();
    return {
      bench: 'memory',
      server: kind,
      connections: n,
      rss_growth_mb: round((rssAfter - rssBefore) / 1048576, 1),
      bytes_per_connection: Math.round((rssAfter - rssBefore) / n),
      bytes_per_connection_after_gc: Math.round((after.rss - before.rss) / n),
      // JS heap part of it (all threads, after a full GC); the rest is uWS and the kernel-facing buffers.
      heap_bytes_per_connection: Math.round((after.heap - before.heap) / n),
    };
  } finally {
    await server.stop();
  }
}

export async function benchMemory(opts: { quick: boolean }): Promise<Record<string, unknown>[]> {
  const n = opts.quick ? 2000 : 10000;
  return [await perConnection('uws', n), await perConnection('rt', n)];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await benchMemory({ quick: process.argv.includes('--quick') })) console.log(JSON.stringify(r));
}
