// What a test client received, in order, and a wait for the first item matching a predicate (one
// already received or one still to come). The match is consumed, so the next wait finds the next one.

export class Inbox<T> {
  readonly items: T[] = [];
  private waiters: { pred: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  /** `what`: the timeout's message, given what is in the inbox then. */
  constructor(private readonly what: (items: T[]) => string) {}

  add(item: T): void {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => (w.pred(item) ? (w.resolve(item), false) : true));
  }

  next(pred: (item: T) => boolean, timeoutMs: number): Promise<T> {
    const seen = this.items.find(pred);
    if (seen !== undefined) {
      this.items.splice(this.items.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(this.what(this.items))), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (item) => {
          clearTimeout(timer);
          this.items.splice(this.items.indexOf(item), 1);
          resolve(item);
        },
      });
    });
  }
}
