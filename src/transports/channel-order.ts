/**
 * A connection's subscribe and unsubscribe of one channel take effect in the order it sent them, in
 * every protocol: a client may send subscribe, unsubscribe, subscribe back to back (laravel-echo's
 * leave then join), and each must see the channel as the previous one left it, however long the owner
 * or an actor's async authorize takes to answer.
 */

/**
 * Runs `op` once the previous operation under `key` in `chains` has settled (at once when there is
 * none). The entry is removed when the last one settles, so an idle connection keeps no map entry; an
 * operation that finishes synchronously never makes one. A predecessor that failed does not stall the
 * ones after it: `onError` hears of it.
 */
export function inChannelOrder(chains: Map<string, Promise<void>>, key: string, op: () => Promise<void> | void, onError: (err: unknown) => void): void {
  const before = chains.get(key);
  let running: Promise<void> | void;
  if (before) running = before.then(op);
  else {
    try {
      running = op();
    } catch (err) {
      return onError(err);
    }
  }
  if (!running) return;
  const tail: Promise<void> = running.catch(onError).finally(() => {
    if (chains.get(key) === tail) chains.delete(key);
  });
  chains.set(key, tail);
}
