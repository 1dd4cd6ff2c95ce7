/**
 * Per-thread figures only the thread itself can read (its V8 heap, its event-loop delay and
 * utilization), written into its metrics block once a second; and the thread's one housekeeping timer,
 * on which the rest of its periodic upkeep runs (`every`). The shards and the main thread each run one.
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
 * Each wake-up of an idle thread costs about 0.2 ms of CPU whatever it does (cold caches, the kernel's
 * switch, Node's timer list): with separate timers for the stats (every 250 ms), the slow-consumer sweep
 * (100 ms) and the probe, a 2-shard server woke some 50 times a second at rest. So the upkeep that can
 * wait for a tick runs on the probe's (`every`): as often as asked while the thread works, at REST_MS
 * steps at rest.
 *
 * The probe is ours rather than perf_hooks.monitorEventLoopDelay, whose histogram records the time
 * *between* its ticks (an idle thread read 0.020 s of "delay" at 20 ms) and, after each reset, drops
 * its first tick, so a stall spanning that tick went unseen. Here each tick records its own lateness
 * against the time it was due.
 */
const BUSY_MS = 20;
const REST_MS = 200;
const REST_FRACTION = BUSY_MS / 1000;

export interface ThreadSampler {
  /**
   * Runs `fn` on the first tick at least `ms` after its previous run: every `ms` (to the next BUSY_MS)
   * while the thread works, every REST_MS or `ms`, whichever is longer, at rest. A throw is the
   * thread's uncaught error, as from any timer.
   */
  every(ms: number, fn: () => void): void;
  stop(): void;
}

export interface ThreadSamplerOptions {
  /** Runs after each once-a-second sample (the main thread's extra gauges). */
  more?: () => void;
  /** Keep the thread's event loop alive with the tick (a shard: a pending waitAsync alone does not). */
  keepAlive?: boolean;
}

const SAMPLE_MS = 1000;
/** How often a thread copies its counts into the shared stats and metrics (at rest: each tick). */
export const STATS_MS = 250;

export function startThreadSampler(m: Metrics, opts: ThreadSamplerOptions = {}): ThreadSampler {
  const late = createHistogram();
  const jobs: { ms: number; fn: () => void; last: number }[] = [];
  // A thread starts busy (loading code, attaching its app): probe finely until a quiet second says otherwise.
  let every = BUSY_MS;
  let due = 0;
  let probe: NodeJS.Timeout | undefined;
  let probeMs = 0;
  let stopped = false;
  const arm = (): void => {
    due = performance.now() + every;
    // The same timer re-armed (refresh reactivates a timer that has fired): a new Timeout per tick was a
    // fifth of the tick's cost in a busy shard's profile.
    if (probe && probeMs === every) {
      probe.refresh();
      return;
    }
    probe = setTimeout(tick, every);
    probeMs = every;
    if (!opts.keepAlive) probe.unref();
  };
  const tick = (): void => {
    const now = performance.now();
    // In ns, at least 1 (the histogram's floor): a timer runs up to a millisecond early by the loop's clock.
    late.record(Math.max(1, Math.round((now - due) * 1e6)));
    // Up to a tick early: a job asked for every 100 ms runs on every fifth 20 ms tick, not every sixth.
    for (const j of jobs) {
      if (now - j.last >= j.ms - every / 2) {
        j.last = now;
        j.fn();
      }
    }
    if (!stopped) arm();
  };
  let elu: EventLoopUtilization = performance.eventLoopUtilization();
  const sample = (): void => {
    const mem = process.memoryUsage();
    m.set('rt_heap_used_bytes', undefined, mem.heapUsed);
    m.set('rt_heap_total_bytes', undefined, mem.heapTotal);
    const now = performance.eventLoopUtilization();
    const window = performance.eventLoopUtilization(now, elu);
    // The first call (at start) covers no time worth reporting.
    const covered = window.idle + window.active > 100;
    if (covered) m.set('rt_event_loop_utilization', undefined, window.utilization);
    elu = now;
    // The histogram holds the ticks since the last sample only: reset after reading.
    if (late.count > 0) {
      m.set('rt_event_loop_delay_seconds', { stat: 'mean' }, late.mean / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'p50' }, late.percentile(50) / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'p99' }, late.percentile(99) / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'max' }, late.max / NS);
    }
    late.reset();
    // Takes effect when the tick this runs in re-arms.
    if (covered) every = window.utilization >= REST_FRACTION ? BUSY_MS : REST_MS;
    m.set('rt_event_loop_delay_resolution_seconds', undefined, every / 1000);
    opts.more?.();
  };
  sample();
  jobs.push({ ms: SAMPLE_MS, fn: sample, last: performance.now() });
  arm();
  return {
    every(ms, fn) {
      jobs.push({ ms, fn, last: performance.now() });
    },
    stop() {
      stopped = true;
      clearTimeout(probe);
    },
  };
}
