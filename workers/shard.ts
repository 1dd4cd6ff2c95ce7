/**
 * Thread entry of one shard. The thread lives exactly as long as the shard: when runShard ends (stop)
 * or fails (a crash, after it closed its uWS handles), the thread exits, so a replacement starts with
 * fresh module state and no leftover timers.
 */
import { workerData } from 'node:worker_threads';
import type { ShardTask } from '../src/runtime/shard.js';
import { registerTypeScriptLoader } from '../src/actors/ts-loader.js';

const task = workerData as ShardTask;
// The actors folder's loader hooks go in before any of the shard's own modules load. Registered later
// (when the folder is imported, during start), they came in while other imports of the thread could be
// in flight: the likely cause of a shard whose module failed to link once in CI ("does not provide an
// export named 'Hub'", a server with a TypeScript actors folder).
if (task.config.actors) registerTypeScriptLoader();
const { runShard } = await import('../src/runtime/shard.js');

// The delay lets uWS finish closing what app.close() started before the thread goes away. A failure
// is rethrown so the supervisor's Worker 'error' event carries it.
runShard(task).then(
  () => setTimeout(() => process.exit(0), 20),
  (err: unknown) =>
    setTimeout(() => {
      throw err;
    }, 20),
);
