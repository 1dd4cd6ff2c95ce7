/**
 * Thread entry of the actors folder's module compiler (src/actors/module-compiler.ts): a thread of its
 * own so TypeScript is loaded there and freed with the thread, not kept by the main thread for its
 * whole life.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { compileModules, type NodeOptions } from '../src/actors/module-compiler.js';

const { root, entries, outDir, node } = workerData as { root: string; entries: string[]; outDir: string; node: NodeOptions };
parentPort!.postMessage(await compileModules(root, entries, outDir, node));
