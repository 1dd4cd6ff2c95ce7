/**
 * Server memory per idle connection: RSS growth of the server process for N idle WebSockets; and what
 * those idle connections cost in server CPU while nothing is sent (timers and sweeps that visit every
 * connection show here).
 */
import { performance } from 'node:perf_hooks';
import { BenchServer, connectMany, median, repeatRounds, round, type ServerKind } from './lib.js';

/**
 * Idle CPU: the median of IDLE_WINDOWS one-second windows, the first IDLE_SETTLE_MS after the forced GC
 * that follows the connections. A median, because one-off work lands in some windows and is not the steady cost of
 * idle connections: V8's memory reducer shrinks each thread's heap with a few full GCs some 6–8 s after
 * the handshakes stop allocating (`--trace-gc`: "Mark-Compact (reduce)", 40–90 ms of CPU a thread), and
 * every connection is pinged once per idle period (rt-actors: --idle-timeout 60 s, pings ~30 s in).
 */
const IDLE_WINDOWS = 7;
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
    // Right away, as `before` was: later, V8's memory reducer hands freed heap pages back to the system
    // and the RSS after a GC falls below `before`'s (negative figures in runs that measured it last).
    const after = await server.memory();
    // Idle CPU: once the forced GC's background sweeping and the handshakes' garbage are done.
    await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
    if (process.env.BENCH_NODE_ARGS) console.error(`-- measuring ${kind} idle`);
    const windows: number[] = [];
    let cpu0 = await server.cpuMicros();
    for (let i = 0; i < IDLE_WINDOWS; i++) {
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 1000));
      const cpu1 = await server.cpuMicros();
      windows.push((cpu1 - cpu0) / 1000 / ((performance.now() - t0) / 1000));
      cpu0 = cpu1;
    }
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
      // Server CPU while the connections sit idle, ms per second, all threads: the median window, and all.
      idle_cpu_ms_per_s: round(median(windows), 1),
      idle_cpu_ms_per_s_windows: windows.map((w) => round(w, 1)),
    };
  } finally {
    await server.stop();
  }
}

/**
 * BENCH_REPEAT=n rounds, each server once per round in turn; each row is then the median round (by bytes per
 * connection) with the range. One round alone is not a figure to judge the target by: most of the RSS
 * growth is V8 growing each thread's young generation while the handshakes' records survive, a fixed
 * amount (up to two 16 MB semi-spaces a thread) whose size depends on when scavenges fall — 1.2–2.5 KB per
 * connection between runs on one VM (docs/benchmarks.md, seventeenth session).
 */
export async function benchMemory(opts: { quick: boolean }): Promise<Record<string, unknown>[]> {
  const n = opts.quick ? 2000 : 10000;
  const kinds: ServerKind[] = ['uws', 'rt'];
  const rounds = new Map<ServerKind, Record<string, unknown>[]>(kinds.map((k) => [k, []]));
  for (let i = 0; i < repeatRounds(); i++) for (const k of kinds) rounds.get(k)!.push(await perConnection(k, n));
  return kinds.map((k) => {
    const rows = rounds.get(k)!;
    if (rows.length === 1) return rows[0]!;
    const perConn = rows.map((r) => r.bytes_per_connection as number);
    const mid = median(perConn);
    const row = rows.find((r) => r.bytes_per_connection === mid) ?? rows[0]!;
    return { ...row, rounds: rows.length, bytes_per_connection: mid, bytes_per_connection_range: [Math.min(...perConn), Math.max(...perConn)], bytes_per_connection_rounds: perConn };
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await benchMemory({ quick: process.argv.includes('--quick') })) console.log(JSON.stringify(r));
}
