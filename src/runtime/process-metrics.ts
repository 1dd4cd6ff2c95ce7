/**
 * Process-wide figures in the names Prometheus' client libraries use (process_*), read when /metrics
 * is scraped by whichever thread answers: CPU, resident memory and file descriptors belong to the
 * whole process, not to a thread.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessFigures {
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  residentBytes: number;
  openFds: number | undefined;
  maxFds: number | undefined;
  startTimeSeconds: number;
}

/** Open descriptors and their limit from /proc (Linux); undefined elsewhere. */
function fds(): { open?: number; max?: number } {
  try {
    const open = readdirSync('/proc/self/fd').length;
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return { open, max: m && m[1] !== 'unlimited' ? Number(m[1]) : undefined };
  } catch {
    return {};
  }
}

export function processFigures(): ProcessFigures {
  const cpu = process.cpuUsage();
  const f = fds();
  return {
    cpuUserSeconds: cpu.user / 1e6,
    cpuSystemSeconds: cpu.system / 1e6,
    residentBytes: process.memoryUsage.rss(),
    openFds: f.open,
    maxFds: f.max,
    startTimeSeconds: Math.round(Date.now() / 1000 - process.uptime()),
  };
}

export function renderProcessMetrics(p: ProcessFigures = processFigures()): string {
  const out: string[] = [];
  const one = (name: string, type: 'counter' | 'gauge', help: string, v: number | undefined) => {
    if (v === undefined) return;
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${v}`);
  };
  one('process_cpu_user_seconds_total', 'counter', 'User CPU time of the process (every thread), in seconds.', p.cpuUserSeconds);
  one('process_cpu_system_seconds_total', 'counter', 'System CPU time of the process (every thread), in seconds.', p.cpuSystemSeconds);
  one('process_cpu_seconds_total', 'counter', 'Total user and system CPU time of the process, in seconds.', p.cpuUserSeconds + p.cpuSystemSeconds);
  one('process_resident_memory_bytes', 'gauge', 'Resident memory of the process, in bytes.', p.residentBytes);
  one('process_open_fds', 'gauge', 'Open file descriptors (sockets included).', p.openFds);
  one('process_max_fds', 'gauge', 'Limit of open file descriptors.', p.maxFds);
  one('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch, in seconds.', p.startTimeSeconds);
  return out.join('\n') + '\n';
}
