/**
 * Per-thread figures only the thread itself can read (its V8 heap, its event-loop delay and
 * utilization), written into its metrics block once a second. The shards and the main thread each run one.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { Metrics } from './metrics.js';

const NS = 1e9;

export function startThreadSampler(m: Metrics, more?: () => void, intervalMs = 1000): { stop(): void; sample(): void } {
  // The histogram's own timer is the probe, and each tick wakes an idle thread: at 10 ms, Node's
  // default, the probes of a 2-shard server cost ~11 ms of CPU a second at rest (bench/memory.ts,
  // idle_cpu_ms_per_s). 20 ms halves that and still gives 50 samples a second.
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  let elu: EventLoopUtilization = performance.eventLoopUtilization();
  const sample = (): void => {
    const mem = process.memoryUsage();
    m.set('rt_heap_used_bytes', undefined, mem.heapUsed);
    m.set('rt_heap_total_bytes', undefined, mem.heapTotal);
    const now = performance.eventLoopUtilization();
    const window = performance.eventLoopUtilization(now, elu);
    // The first call (at start) covers no time worth reporting.
    if (window.idle + window.active > 100) m.set('rt_event_loop_utilization', undefined, window.utilization);
    elu = now;
    // The histogram holds the samples of the last interval only: reset after reading.
    if (delay.count > 0) {
      m.set('rt_event_loop_delay_seconds', { stat: 'mean' }, delay.mean / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'p50' }, delay.percentile(50) / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'p99' }, delay.percentile(99) / NS);
      m.set('rt_event_loop_delay_seconds', { stat: 'max' }, delay.max / NS);
    }
    delay.reset();
    more?.();
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return {
    sample,
    stop() {
      clearInterval(timer);
      delay.disable();
    },
  };
}
