/** Piscina worker entry: each task is one shard, running until the supervisor stops it. */
import { runShard, type ShardTask } from '../src/runtime/shard.js';

export default function shard(task: ShardTask): Promise<void> {
  return runShard(task);
}
