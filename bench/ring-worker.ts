/**
 * Worker side of bench/ring.ts. One instance plays the producer, one the consumer; the same pair
 * runs both the ring and the postMessage rounds so the two figures share warm-up and scheduling.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Doorbell, RingConsumer, RingProducer } from '../src/runtime/ring.js';
import { encodeHot } from '../src/runtime/frames.js';
import { JsonData, EncodedPublication } from '../src/protocol/encoded-payload.js';

interface Init {
  role: 'producer' | 'consumer';
  ring: SharedArrayBuffer;
  producerBell: SharedArrayBuffer;
  consumerBell: SharedArrayBuffer;
  port: MessagePort;
  payloadBytes: number;
  payloadKind: 'buffer' | 'string' | 'pub-binary' | 'pub-msgpack' | 'pub-json';
}
type Cmd = { cmd: 'run'; mode: 'ring' | 'postmessage'; n: number };

const init = workerData as Init;
const port = parentPort!;
// A pending Atomics.waitAsync does not keep a worker alive; this does, until the bench terminates us.
setInterval(() => {}, 1 << 30);
// Producers hand the event loop back this often, as any real sender would, so the consumer
// is woken (microtask-batched) while the producer is still producing.
const BATCH = 4096;

const now = (): number => performance.timeOrigin + performance.now();

if (init.role === 'producer') {
  const producer = new RingProducer(init.ring, init.consumerBell);
  const bell = new Doorbell(init.producerBell);
  const msg = {
    seq: 0,
    payload: init.payloadKind === 'buffer' ? Buffer.alloc(init.payloadBytes, 0x61) : 'a'.repeat(init.payloadBytes),
  };
  // The product's hot frame: a publication for a subscriber shard, `payloadBytes` of string data, as
  // the mesh sends it (binary, frames.ts) or as the generic msgpack map it was before.
  const pub = { channel: 'bench-room', event: 'message', data: { text: msg.payload }, offset: 0 };
  const env = { k: 'n' as const, b: { t: 'pub!' as const, pub, at: 1234.5 } };
  // The same publication with its payload kept as JSON text, as it crosses threads when it came from
  // a JSON client or the HTTP API (encoded-payload.ts): the receiver gets the text, not a parsed value.
  const jsonPub = new EncodedPublication('bench-room', 'message', 0, new JsonData(JSON.stringify({ text: msg.payload })));
  const jsonEnv = { k: 'n' as const, b: { t: 'pub!' as const, pub: jsonPub, at: 1234.5 } };
  const isPub = init.payloadKind.startsWith('pub-');
  const sendRing =
    init.payloadKind === 'pub-json'
      ? (i: number): void => {
          jsonPub.offset = i;
          const h = encodeHot(jsonEnv)!;
          producer.sendEncoded(h.buf, h.start, h.end - h.start);
        }
      : init.payloadKind === 'pub-binary'
      ? (i: number): void => {
          pub.offset = i;
          const h = encodeHot(env)!;
          producer.sendEncoded(h.buf, h.start, h.end - h.start);
        }
      : init.payloadKind === 'pub-msgpack'
        ? (i: number): void => {
            pub.offset = i;
            producer.send(env);
          }
        : (i: number): void => {
            msg.seq = i;
            producer.send(msg);
          };
  let resume: (() => void) | null = null;
  // The contract: the producer thread's wake-up handler flushes its producers.
  bell.listen(() => {
    if (producer.queuedBytes > 0 && producer.flush() && resume) {
      const r = resume;
      resume = null;
      r();
    }
  });

  const runRing = (n: number): void => {
    let i = 0;
    const pump = (): void => {
      let k = 0;
      while (i < n) {
        if (producer.queuedBytes > 0) {
          // Ring full: wait for the consumer to make room (it rings our doorbell).
          resume = pump;
          return;
        }
        sendRing(i++);
        if (++k === BATCH) {
          setImmediate(pump);
          return;
        }
      }
    };
    pump();
  };

  const runPost = (n: number): void => {
    let i = 0;
    const pump = (): void => {
      let k = 0;
      while (i < n) {
        if (isPub) {
          pub.offset = i++;
          init.port.postMessage(env);
        } else {
          msg.seq = i++;
          init.port.postMessage(msg);
        }
        if (++k === BATCH) {
          setImmediate(pump);
          return;
        }
      }
    };
    pump();
  };

  port.on('message', (c: Cmd) => {
    port.postMessage({ started: now() });
    if (c.mode === 'ring') runRing(c.n);
    else runPost(c.n);
  });
} else {
  const consumer = new RingConsumer(init.ring, init.producerBell);
  const bell = new Doorbell(init.consumerBell);
  let expected = 0;
  let target = -1;
  let errors = 0;
  const onMsg = (m: unknown): void => {
    const seq = (m as { seq?: number }).seq ?? (m as { b: { pub: { offset: number } } }).b.pub.offset;
    if (seq !== expected) errors++;
    if (++expected === target) {
      port.postMessage({ finished: now(), errors });
      target = -1;
    }
  };
  bell.listen(() => {
    consumer.drain(onMsg);
  });
  init.port.on('message', onMsg);

  port.on('message', (c: Cmd) => {
    expected = 0;
    errors = 0;
    target = c.n;
    port.postMessage({ ready: true });
  });
}
