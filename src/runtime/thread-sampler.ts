/**
 * Per-thread figures only the thread itself can read (its V8 heap, its event-loop delay and
 * utilization), written into its metrics block once a second. The shards and the main thread each run one.
 */
import { createHistogram, performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { Metrics } from './metrics.js';

const NS = 1e9;

/**
 * The delay probe is a timer that records how late it ran, and every tick wakes the thread. At a tick
 * every 20 ms in each of a 2-shard server's three threads, the probes were about half of what the server
 * spends at rest (bench/memory.ts, idle_cpu_ms_per_s: 20–25 ms a second with them, 10–12 without). So a
 * thread probes every BUSY_MS while it works and every REST_MS while it does not: at rest a stall longer
 * than REST_MS still shows (the tick due during it runs late by the rest of the stall), and a thread that
 * ran less than BUSY_MS in a whole second cannot have held an event back for longer than that.
 * REST_FRACTION, the line between the two, is exactly that: BUSY_MS of work per second.
 *
 * The probe is ours rather than perf_hooks.monitorEventLoopDelay, whose histogram records the time
 * *between* its ticks (an idle thread read 0.020 s of "delay" at 20 ms) and, after each reset, drops
 * its first tick, so a stall spanning that tick went unseen. Here each tick records its own lateness
 * against the time it was due.
 */
const BUSY_MS = 20;
const REST_MS = 200;
const REST_FRACTION = BUSY_MS / 1000;

export function startThreadSampler(m: Metrics, more?: () => void, intervalMs = 1000): { stop(): void } {
  const late = createHistogram();
  // A thread starts busy (loading code, attaching its app): probe finely until a quiet second says otherwise.
  let every = BUSY_MS;
  let due = 0;
  let probe: NodeJS.Timeout | undefined;
  const arm = (): void => {
    due = performance.now() + every;
    probe = setTimeout(tick, every);
    probe.unref();
  };
  const tick = (): void => {
    // In ns, at least 1 (the histogram's floor): a timer runs up to a millisecond early by the loop's clock.
    late.record(Math.max(1, Math.round((performance.now() - due) * 1e6)));
    arm();
  };
  arm();
  let elu: EventLoopUtilization = performance.eventLoopUtilization();
  const sample = (): void => {
    // After a stall every timer due during it runs, in the order of their lists: a probe tick may still be
    // waiting, and switching the interval below would cancel it. Run it here.
    if (performance.now() > due) {
      clearTimeout(probe);
      tick();
    }
    const mem = process.memoryUsage();
    m.set('rt_heap_used_bytes', undefined, mem.heapUsed);
    m.set('rt_heap_total_bytes', undefined, mem.heapTotal);
    const now = performance.eventLoopUtilization();
    const window = performance.eventLoopUtilization(now, elu);
    // The first call (at start) covers no time worth reporting.
    const covered = window.idle + window.active > 100;
    if (covered) m.set('rt_event_loop_utilization', undefined, window.utilization);
    elu = now;
    // The histogram holds the ticks of the last interval only: reset after reading.
    if (late.count > 0) {
      m.set('rt_event_loop_delay_seconds', { stat: 'mean' }, late.mean / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'p50' }, late.percentile(50) / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'p99' }, late.percentile(99) / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'max' }, late.max / NS);
    }
    late.reset();
    if (covered) {
      const next = window.utilization >= REST_FRACTION ? BUSY_MS : REST_MS;
      if (next !== every) {
        every = next;
        clearTimeout(probe);
        arm();
      }
    }
    m.set('rt_event_loop_delay_resolution_seconds', undefined, every / 1000);
    more?.();
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      clearTimeout(probe);
    },
  };
}
