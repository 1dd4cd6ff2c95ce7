// --workers=auto counts the CPUs the process may use: under a cgroup CPU quota (docker --cpus, a
// Kubernetes CPU limit, systemd CPUQuota=) that is the quota, not the host's cores, which Node 20's
// os.availableParallelism() reports. The test puts the server in a cgroup of its own with a 1-CPU quota
// (cgroup v1's cpu controller or v2's cpu.max; it needs root, as on CI).
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { listeningPort, runCli } from './helpers/cli.js';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));

/** A new cgroup with a quota of one CPU: its directory and the file a process joins it through. */
function oneCpuCgroup(): { dir: string; join: string } {
  const name = `rt-actors-test-${process.pid}`;
  const v1 = '/sys/fs/cgroup/cpu';
  if (existsSync(`${v1}/cpu.cfs_quota_us`)) {
    const dir = `${v1}/${name}`;
    mkdirSync(dir);
    writeFileSync(`${dir}/cpu.cfs_period_us`, '100000');
    writeFileSync(`${dir}/cpu.cfs_quota_us`, '100000');
    return { dir, join: `${dir}/tasks` };
  }
  const v2 = '/sys/fs/cgroup';
  if (existsSync(`${v2}/cgroup.controllers`) && readFileSync(`${v2}/cgroup.controllers`, 'utf8').split(/\s+/).includes('cpu')) {
    const dir = `${v2}/${name}`;
    mkdirSync(dir);
    writeFileSync(`${dir}/cpu.max`, '100000 100000');
    return { dir, join: `${dir}/cgroup.procs` };
  }
  throw new Error('no cgroup cpu controller to put a quota on (cgroup v1 /sys/fs/cgroup/cpu or v2 with cpu enabled)');
}

t.test('--workers=auto under a 1-CPU quota starts one shard', async (t) => {
  t.ok(availableParallelism() > 1, `the machine has more than one core (${availableParallelism()}), so one shard is the quota's doing`);
  const cg = oneCpuCgroup();
  // The shell joins the cgroup, then becomes the server, which starts inside it.
  const p = runCli(t, 'sh', ['-c', `echo $$ > ${cg.join} && exec "${process.execPath}" "${bin}" start --port=0 --host=127.0.0.1 --workers=auto`]);
  t.teardown(async () => {
    // A cgroup with a process in it cannot be removed.
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
    rmdirSync(cg.dir);
  });
  await listeningPort(p);
  t.match(p.output(), /listening on 127\.0\.0\.1:\d+ with 1 shard /);
  const health = await fetch(`http://127.0.0.1:${await listeningPort(p)}/health`).then((r) => r.json());
  t.same(health.workers, { total: 1, alive: 1, stuck: 0 });
  p.child.kill('SIGTERM');
  t.same(await p.exited, { code: 0, signal: null });
});
