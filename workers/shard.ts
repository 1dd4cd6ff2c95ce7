/**
 * Thread entry of one shard. The thread lives exactly as long as the shard: when runShard ends (stop)
 * or fails (a crash, after it closed its uWS handles), the thread exits, so a replacement starts with
 * fresh module state and no leftover timers.
 */
import { workerData } from 'node:worker_threads';
import { runShard, type ShardTask } from '../src/runtime/shard.js';

// The delay lets uWS finish closing what app.close() started before the thread goes away. A failure
// is rethrown so the supervisor's Worker 'error' event carries it.
runShard(workerData as ShardTask).then(
  () => setTimeout(() => process.exit(0), 20),
  (err: unknown) =>
    setTimeout(() => {
      throw err;
    }, 20),
);
