/**
 * Plain uWebSockets.js on W threads: the baseline for what any multi-threaded server pays, without
 * rt-actors. The main thread accepts and hands each socket to a worker thread's App (uWS app
 * descriptors, as rt-actors does); every worker serves the same /ws and /publish as the one-thread
 * `uws` bench server (uws-routes.ts), and a publication that enters one thread is posted to the others
 * (BroadcastChannel), each of which publishes it to its own uWS topic. No ordering, history or limits:
 * the least a server on W threads must do.
 */
import { BroadcastChannel, isMainThread, parentPort, Worker } from 'node:worker_threads';
import uWS from 'uWebSockets.js';
import { uwsRoutes } from './uws-routes.js';

const CHANNEL = 'rt-actors-bench-uws-threads';

export interface ThreadedUws {
  port: number;
  /** Publishes from the main thread: posted to every worker. */
  publish(channel: string, frame: string): void;
  stop(): Promise<void>;
}

export async function startThreadedUws(threads: number): Promise<ThreadedUws> {
  // The descriptor methods are in the build, not in its type declarations.
  const acceptor = uWS.App() as uWS.TemplatedApp & { addChildAppDescriptor(d: unknown): void };
  const bus = new BroadcastChannel(CHANNEL);
  bus.unref();
  const workers = await Promise.all(
    Array.from({ length: threads }, () => new Promise<Worker>((resolve, reject) => {
      const w = new Worker(new URL(import.meta.url));
      w.once('message', (m: { descriptor: unknown }) => {
        acceptor.addChildAppDescriptor(m.descriptor);
        resolve(w);
      });
      w.once('error', reject);
    })),
  );
  const port = await new Promise<number>((resolve, reject) =>
    acceptor.listen('127.0.0.1', 0, (s) => (s ? resolve(uWS.us_socket_local_port(s as never)) : reject(new Error('uws-threads: cannot listen')))),
  );
  return {
    port,
    publish: (channel, frame) => bus.postMessage([channel, frame]),
    stop: async () => {
      acceptor.close();
      bus.close();
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

function serveInWorker(): void {
  const app = uWS.App();
  const bus = new BroadcastChannel(CHANNEL);
  // Another thread's publication (BroadcastChannel does not echo a thread's own posts).
  bus.onmessage = (e) => {
    const [channel, frame] = (e as { data: [string, string] }).data;
    app.publish(channel, frame);
  };
  uwsRoutes(app, (channel, frame) => {
    app.publish(channel, frame);
    bus.postMessage([channel, frame]);
  });
  parentPort!.postMessage({ descriptor: (app as unknown as { getDescriptor(): unknown }).getDescriptor() });
}

if (!isMainThread) serveInWorker();
