// Runs the rt-actors command as a user would (a real process), and reads what it prints.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { until } from './redis.js';

type T = { teardown(fn: () => unknown): void };

export interface CliProcess {
  child: ChildProcess;
  /** stdout and stderr, interleaved as they arrived. */
  output(): string;
  /** Resolves with the first match of `re` in the output. */
  waitFor(re: RegExp, ms?: number): Promise<RegExpExecArray>;
  /** Resolves when the process exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The environment of a child, without the npm_* variables of the `npm test` that runs us. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, RT_API_KEY: 'install-test-key', ...extra };
}

export function runCli(t: T, command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; detached?: boolean } = {}): CliProcess {
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(() => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // Detached children lead a process group: take the whole group down (npm, sh, node).
    if (opts.detached && child.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    } else child.kill('SIGKILL');
  });
  return {
    child,
    output: () => out,
    exited,
    waitFor: (re, ms = 30000) =>
      until(`${re} in the output of ${command} ${args.join(' ')}`, () => re.exec(out) ?? (child.exitCode !== null ? Promise.reject(new Error(`exited ${child.exitCode}: ${out}`)) : null), ms),
  };
}

/** The port a started server announced ("listening on <host>:<port>", text or JSON logs). */
export async function listeningPort(p: CliProcess, ms?: number): Promise<number> {
  return Number((await p.waitFor(/listening on [^\n"]*?:(\d+) with/, ms))[1]);
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}
