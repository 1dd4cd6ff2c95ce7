/**
 * Ring queue vs per-message postMessage between two real worker threads, same messages, same
 * worker pair, same run. One record per payload size and kind (Buffer or string).
 *
 *   node dist/bench/ring.js [--quick]     prints one JSON line per figure
 */
import { Worker, MessageChannel } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { median } from './lib.js';
import { allocDoorbell, allocRing } from '../src/runtime/ring.js';

interface Reply {
  started?: number;
  finished?: number;
  errors?: number;
  ready?: boolean;
}

const WORKER_URL = new URL('./ring-worker.js', import.meta.url);

function nextReply(w: Worker, key: keyof Reply): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: Reply): void => {
      if (m[key] === undefined) return;
      cleanup();
      resolve(m);
    };
    const onErr = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`bench worker exited early (code ${code})`));
    };
    const cleanup = (): void => {
      w.off('message', onMsg);
      w.off('error', onErr);
      w.off('exit', onExit);
    };
    w.on('message', onMsg);
    w.on('error', onErr);
    w.on('exit', onExit);
  });
}

async function measurePair(
  payloadBytes: number,
  payloadKind: 'buffer' | 'string' | 'pub-binary' | 'pub-msgpack' | 'pub-json',
  n: number,
  reps: number,
): Promise<{ ring: number; post: number }> {
  const ring = allocRing();
  const producerBell = allocDoorbell();
  const consumerBell = allocDoorbell();
  const { port1, port2 } = new MessageChannel();
  const common = { ring, producerBell, consumerBell, payloadBytes, payloadKind };
  const producer = new Worker(WORKER_URL, {
    workerData: { ...common, role: 'producer', port: port1 },
    transferList: [port1],
  });
  const consumer = new Worker(WORKER_URL, {
    workerData: { ...common, role: 'consumer', port: port2 },
    transferList: [port2],
  });

  const round = async (mode: 'ring' | 'postmessage', count: number): Promise<number> => {
    const ready = nextReply(consumer, 'ready');
    consumer.postMessage({ cmd: 'run', mode, n: count });
    await ready;
    const started = nextReply(producer, 'started');
    const finished = nextReply(consumer, 'finished');
    producer.postMessage({ cmd: 'run', mode, n: count });
    const [s, f] = await Promise.all([started, finished]);
    if (f.errors) throw new Error(`${mode}: ${f.errors} messages out of order`);
    return count / ((f.finished! - s.started!) / 1000);
  };

  try {
    // Warm both paths up (JIT, lazily grown buffers) before anything is timed.
    const warm = Math.min(n, 20_000);
    await round('ring', warm);
    await round('postmessage', warm);
    const ringRates: number[] = [];
    const postRates: number[] = [];
    // Interleave so drift (thermal, other load) hits both figures alike.
    for (let r = 0; r < reps; r++) {
      ringRates.push(await round('ring', n));
      postRates.push(await round('postmessage', n));
    }
    return { ring: median(ringRates), post: median(postRates) };
  } finally {
    await Promise.all([producer.terminate(), consumer.terminate()]);
  }
}

/**
 * Messages are `{ seq, payload }` with a Buffer or a string payload of the given size, the same
 * object for both transports; or (`pub-binary`, `pub-msgpack`) the product's hottest frame, a `pub!`
 * notice whose data holds a string of that size, through the ring in its binary form (as the mesh
 * sends it) or as a generic msgpack map (as it was sent before), or (`pub-json`) with its payload kept
 * as JSON text (as a publication from the HTTP API or a JSON client crosses threads), and as the same
 * object by postMessage. Both run in the same worker pair, interleaved, median of `reps`.
 */
export async function benchRing(opts: { quick: boolean }): Promise<Array<Record<string, unknown>>> {
  const sizes = opts.quick
    ? [
        { payload: 64, n: 80_000, reps: 3 },
        { payload: 1024, n: 30_000, reps: 3 },
      ]
    : [
        { payload: 64, n: 1_000_000, reps: 5 },
        { payload: 1024, n: 300_000, reps: 5 },
      ];
  const out: Array<Record<string, unknown>> = [];
  for (const s of sizes) {
    for (const kind of ['buffer', 'string', 'pub-binary', 'pub-msgpack', 'pub-json'] as const) {
      const { ring, post } = await measurePair(s.payload, kind, s.n, s.reps);
      out.push({
        bench: 'ring',
        payload: s.payload,
        payload_kind: kind,
        messages: s.n,
        reps: s.reps,
        ring_msgs_per_s: Math.round(ring),
        postmessage_msgs_per_s: Math.round(post),
        ratio: Math.round((ring / post) * 100) / 100,
      });
    }
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  for (const rec of await benchRing({ quick })) console.log(JSON.stringify(rec));
}
