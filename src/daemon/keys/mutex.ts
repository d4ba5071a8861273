/** A FIFO async mutex: one critical section at a time, in arrival order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.tail.then(fn);
    // The next waiter runs after this one settles, whether it failed or not.
    this.tail = result.catch(() => undefined);
    return result;
  }
}
