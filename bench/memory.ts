/**
 * Server memory per idle connection: RSS growth of the server process for N idle WebSockets; and what
 * those idle connections cost in server CPU while nothing is sent (timers and sweeps that visit every
 * connection show here).
 */
import { BenchServer, connectMany, round, type ServerKind } from './lib.js';

/** How long the idle CPU is measured, and how long after the last connection opened. */
const IDLE_MS = 3000;
const IDLE_SETTLE_MS = 10000;

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
    // Idle CPU: after the connections' own garbage is collected (IDLE_SETTLE_MS), and before the
    // forced GC below, whose background sweeping would be counted.
    await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
    if (process.env.BENCH_NODE_ARGS) console.error(`-- measuring ${kind} idle`);
    const cpu0 = await server.cpuMicros();
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const idleCpu = (await server.cpuMicros()) - cpu0;
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
      // Server CPU while the connections sit idle, per second, all threads.
      idle_cpu_ms_per_s: round(idleCpu / 1000 / (IDLE_MS / 1000), 1),
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
