/**
 * The daemon's stop, as calls see it. Unary calls and streams end by themselves; a Session a busy
 * client keeps using never would, so the drain would only end by cutting it off (its operations
 * then CANCELLED, the daemon's drain period spent). Sessions listen here instead: they read nothing
 * more, finish what they have read, and end with UNAVAILABLE / SHUTTING_DOWN, which tells the client
 * that every operation not answered was not done, and can be sent again to the restarted daemon.
 * A unary call still waiting for room in the buffer budget (handler.ts unary) would end only as its
 * client's other calls do: it ends the same way at once, its operation not done.
 */
export class Drain {
  private started = false;
  private readonly listeners = new Set<() => void>();

  get draining(): boolean {
    return this.started;
  }

  /** Calls `fn` once when the drain starts (at once if it has); returns the un-registration. */
  onStart(fn: () => void): () => void {
    if (this.started) {
      fn();
      return () => {};
    }
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    for (const fn of [...this.listeners]) fn();
    this.listeners.clear();
  }
}
