/**
 * npm runs a package's bin through a shell (`sh -c`) for `npx`, `npm exec` and `npm start`. On SIGTERM
 * or SIGINT npm forwards the signal to that shell only; the shell dies without passing it on and npm
 * exits, which would leave the server running, orphaned, still listening. So when npm started us, the
 * server watches its parent process and shuts down, drained, as soon as it is gone.
 */

/** Whether this process was started by npm (npx, npm exec, npm run/start): npm sets these variables. */
export function startedByNpm(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.npm_lifecycle_event !== undefined || env.npm_command !== undefined;
}

/**
 * Calls `onExit` once when the parent process ends (this process is re-parented). Polls: Node has no
 * parent-death notification, and reading the parent pid is a cheap system call. Returns a stop function.
 */
export function watchParent(onExit: () => void, intervalMs = 200): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onExit();
  }, intervalMs);
  // The server's own handles keep the process alive; the watch must not.
  timer.unref();
  return () => clearInterval(timer);
}
