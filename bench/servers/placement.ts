/**
 * Where a benchmark server process runs, from the environment; called in the server process before it
 * starts its threads, so every one of them inherits it (niceness, affinity and policy are per thread).
 * - BENCH_LOAD_NICE: the benchmark process (load generators) runs niced; the server at 0.
 * - BENCH_SERVER_CPUS: the server's CPUs (taskset list), e.g. 1 with the benchmark under `taskset -c 0`.
 * - BENCH_SERVER_SCHED=batch: every server thread SCHED_BATCH (no wake-up preemption), as systemd's
 *   CPUSchedulingPolicy=batch would run it.
 */
import { setPriority } from 'node:os';
import { execFileSync } from 'node:child_process';

export function placeServerProcess(): void {
  if (process.env.BENCH_LOAD_NICE) setPriority(0);
  const pid = String(process.pid);
  if (process.env.BENCH_SERVER_CPUS) execFileSync('taskset', ['-a', '-p', '-c', process.env.BENCH_SERVER_CPUS, pid], { stdio: 'ignore' });
  if (process.env.BENCH_SERVER_SCHED) execFileSync('chrt', ['-a', `--${process.env.BENCH_SERVER_SCHED}`, '-p', '0', pid], { stdio: 'ignore' });
}
