/**
 * Per-thread figures only the thread itself can read (its V8 heap, its event-loop delay and
 * utilization), written into its metrics block once a second. The shards and the main thread each run one.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks';
import type { Metrics } from './metrics.js';

const NS = 1e9;

/**
 * The delay probe is a timer of the histogram's own, and every tick wakes the thread. It records the
 * time between its ticks, not how late each came: a thread at rest read as 20 ms of delay at a 20 ms
 * resolution. The delay reported is that time less the probe's interval (late), floored at 0. At 20 ms, the probes of a 2-shard server's three threads were about half of what the
 * server spends at rest (bench/memory.ts, idle_cpu_ms_per_s: 20–25 ms a second with them, 10–12 without).
 * So a thread probes every BUSY_MS while it is working, and every REST_MS while it is not: at rest a
 * stall longer than REST_MS still shows (the probe due during it fires late by the rest of the stall),
 * and a thread that ran less than BUSY_MS in a whole second cannot have held an event back for longer
 * than that. REST_FRACTION, the line between the two, is exactly that: BUSY_MS of work per second.
 */
const BUSY_MS = 20;
const REST_MS = 200;
const REST_FRACTION = BUSY_MS / 1000;

export function startThreadSampler(m: Metrics, more?: () => void, intervalMs = 1000): { stop(): void } {
  const busy = monitorEventLoopDelay({ resolution: BUSY_MS });
  const rest = monitorEventLoopDelay({ resolution: REST_MS });
  // A thread starts busy (loading code, attaching its app): probe finely until a quiet second says otherwise.
  let probe: IntervalHistogram = busy;
  probe.enable();
  let elu: EventLoopUtilization = performance.eventLoopUtilization();
  // This sampler's own timer is a probe too. When a stall ends, the timers due during it run in due order:
  // if this one was due first, it reads the histogram before the probe's late tick has been recorded, and
  // switching probes would drop that tick. Its own lateness then carries the stall (all of it but at
  // most one probe interval), so the max is never less than what the probe would have said.
  let due = performance.now() + intervalMs;
  const sample = (): void => {
    const started = performance.now();
    const selfLate = Math.max(0, started - due) / 1000;
    due = started + intervalMs;
    const mem = process.memoryUsage();
    m.set('rt_heap_used_bytes', undefined, mem.heapUsed);
    m.set('rt_heap_total_bytes', undefined, mem.heapTotal);
    const now = performance.eventLoopUtilization();
    const window = performance.eventLoopUtilization(now, elu);
    // The first call (at start) covers no time worth reporting.
    const covered = window.idle + window.active > 100;
    if (covered) m.set('rt_event_loop_utilization', undefined, window.utilization);
    elu = now;
    // The histogram holds the samples of the last interval only: reset after reading.
    if (probe.count > 0) {
      const tick = (probe === busy ? BUSY_MS : REST_MS) * 1e6;
      const late = (ns: number): number => Math.max(0, ns - tick) / NS;
      m.set('rt_event_loop_delay_seconds', { stat: 'mean' }, late(probe.mean));
      m.set('rt_event_loop_delay_seconds', { stat: 'p50' }, late(probe.percentile(50)));
      m.set('rt_event_loop_delay_seconds', { stat: 'p99' }, late(probe.percentile(99)));
      m.set('rt_event_loop_delay_seconds', { stat: 'max' }, Math.max(late(probe.max), selfLate));
    }
    probe.reset();
    if (covered) {
      const next = window.utilization >= REST_FRACTION ? busy : rest;
      if (next !== probe) {
        probe.disable();
        probe = next;
        probe.enable();
      }
    }
    m.set('rt_event_loop_delay_resolution_seconds', undefined, (probe === busy ? BUSY_MS : REST_MS) / 1000);
    more?.();
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      probe.disable();
    },
  };
}
