/**
 * The CPUs this process may use, for `--workers=auto`: the affinity mask (os.availableParallelism)
 * bounded by a cgroup CPU quota (`docker run --cpus`, Kubernetes CPU limits, systemd CPUQuota=).
 * Node 20's libuv (1.46) ignores the quota, so on a 64-core host a container limited to 2 CPUs would
 * start 64 shards that the quota then throttles.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export function availableCpus(): number {
  const cpus = Math.max(1, availableParallelism());
  const quota = cgroupCpuQuota();
  return quota === undefined ? cpus : Math.max(1, Math.min(cpus, Math.floor(quota)));
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** CPUs' worth of time per period the quota of this cgroup grants, or undefined for none. */
function quotaAt(version: 1 | 2, dir: string): number | undefined {
  if (version === 2) {
    const [max, period] = (read(`${dir}/cpu.max`) ?? '').split(/\s+/);
    return max && max !== 'max' && Number(period) > 0 ? Number(max) / Number(period) : undefined;
  }
  const quota = Number(read(`${dir}/cpu.cfs_quota_us`));
  const period = Number(read(`${dir}/cpu.cfs_period_us`));
  return quota > 0 && period > 0 ? quota / period : undefined;
}

/**
 * The smallest quota on the way from this process's cgroup up to the root: a limit on a parent (a
 * Kubernetes pod, a systemd slice) binds too. Inside a container the cgroup path named in
 * /proc/self/cgroup may not exist under the mount (it is mounted as the root), which walking up covers.
 */
export function cgroupCpuQuota(): number | undefined {
  const lines = (read('/proc/self/cgroup') ?? '').split('\n');
  let least: number | undefined;
  for (const line of lines) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line);
    if (!m) continue;
    const [, controllers, path] = m;
    const roots = controllers === '' ? [['/sys/fs/cgroup', 2], ['/sys/fs/cgroup/unified', 2]] : controllers!.split(',').includes('cpu') ? [[`/sys/fs/cgroup/${controllers}`, 1], ['/sys/fs/cgroup/cpu', 1], ['/sys/fs/cgroup/cpu,cpuacct', 1]] : [];
    for (const [root, version] of roots as [string, 1 | 2][]) {
      for (let p = path!; ; p = p.slice(0, p.lastIndexOf('/')) || '/') {
        const q = quotaAt(version, (root + p).replace(/\/$/, ''));
        if (q !== undefined && (least === undefined || q < least)) least = q;
        if (p === '/') break;
      }
    }
  }
  return least;
}
