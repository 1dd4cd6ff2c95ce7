/** Per-thread CPU time of a bench server process, for the suites' BENCH_THREADS breakdown. */
import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time per thread (Linux /proc), in µs, keyed by thread id and name: which thread — the main one,
 * a shard, V8's compiler or GC helpers, libuv's pool — a figure's user and kernel time went to.
 */
export function threadTimes(): Record<string, { user: number; system: number }> {
  const out: Record<string, { user: number; system: number }> = {};
  const tick = 1e6 / 100; // USER_HZ is 100 on Linux
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[`${tid} ${name}`] = { user: Number(f[11]) * tick, system: Number(f[12]) * tick };
    }
  } catch {
    // Not Linux: no per-thread figures.
  }
  return out;
}
