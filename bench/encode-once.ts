/**
 * Cost at the owner thread of handing one publication to K subscriber threads: K notify() calls
 * (one msgpack encode per thread) vs one notifyMany() (one encode, K copies). CPU time of the
 * sending thread only; the rings are drained between rounds, outside the timed part.
 *
 *   node dist/bench/encode-once.js        prints one JSON line per K
 */
import { pathToFileURL } from 'node:url';
import { median } from './lib.js';
import { createMeshLayout, MeshEndpoint } from '../src/runtime/mesh.js';
import type { Notice } from '../src/runtime/messages.js';

function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

export async function benchEncodeOnce(): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for (const k of [2, 4]) {
    const layout = createMeshLayout(k, 1 << 22);
    const owner = new MeshEndpoint(layout, k); // the main thread's index: every shard is a peer
    const peers = Array.from({ length: k }, (_, i) => new MeshEndpoint(layout, i));
    let received = 0;
    const keep = setInterval(() => {}, 1000);
    owner.start(() => null, () => {});
    peers.forEach((p) => p.start(() => null, () => received++));
    const to = peers.map((_, i) => i);
    const data = { seq: 1, t: 1764111111111.5, text: 'x'.repeat(40) };
    const batch = 2000;
    const rounds = 10;
    const time = async (many: boolean): Promise<number> => {
      let cpu = 0;
      for (let r = 0; r < rounds; r++) {
        const target = received + batch * k;
        const c0 = cpuNs();
        for (let i = 0; i < batch; i++) {
          const n: Notice = { t: 'pub!', pub: { channel: 'bench', event: 'm', data, offset: i + 1 }, at: 1234.5 };
          if (many) owner.notifyMany(to, n);
          else for (const t of to) owner.notify(t, n);
        }
        cpu += cpuNs() - c0;
        while (received < target) await new Promise((res) => setImmediate(res));
      }
      return cpu / (rounds * batch);
    };
    await time(false);
    await time(true);
    const each: number[] = [];
    const once: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      each.push(await time(false));
      once.push(await time(true));
    }
    out.push({ bench: 'encode-once', threads: k, notify_each_ns_per_pub: Math.round(median(each)), notify_many_ns_per_pub: Math.round(median(once)), ratio: Math.round((median(each) / median(once)) * 100) / 100 });
    clearInterval(keep);
    owner.close();
    peers.forEach((p) => p.close());
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const rec of await benchEncodeOnce()) console.log(JSON.stringify(rec));
}
