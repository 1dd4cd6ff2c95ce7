/**
 * A small typed event emitter for the client library (no runtime dependencies, works in browsers).
 * A listener that throws must not break the client's frame loop — that would lose the frames after
 * it — so its error is rethrown on a fresh task, where it still shows up in the console.
 */
export type ListenerMap = { [event: string]: (...args: any[]) => void };

export class Emitter<E extends ListenerMap> {
  private readonly listeners = new Map<keyof E, Set<(...args: any[]) => void>>();

  on<K extends keyof E>(event: K, cb: E[K]): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(cb);
    return this;
  }

  once<K extends keyof E>(event: K, cb: E[K]): this {
    const wrapper = ((...args: any[]) => {
      this.off(event, wrapper);
      cb(...args);
    }) as E[K];
    return this.on(event, wrapper);
  }

  /** Without `cb`, removes every listener of `event`. */
  off<K extends keyof E>(event: K, cb?: E[K]): this {
    if (cb) this.listeners.get(event)?.delete(cb);
    else this.listeners.delete(event);
    return this;
  }

  protected emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const cb of [...set]) safeCall(cb, args);
  }
}

export function safeCall(cb: (...args: any[]) => void, args: unknown[]): void {
  try {
    cb(...args);
  } catch (err) {
    setTimeout(() => {
      throw err;
    }, 0);
  }
}
