/**
 * The daemon-wide bound on what Sessions and crypto streams buffer (Limits.maxBufferedBytes). Each
 * call already bounds its own share (maxSessionBufferedBytes, a stream's few chunks); this bounds
 * their sum, which many calls from many connections could otherwise push past the host's memory.
 * At the bound, calls stop starting work and so stop reading: HTTP/2 flow control then holds their
 * clients' data in the clients, and they go on as soon as others' answers are flushed. Slowed
 * down, never refused.
 *
 * Each call takes its bytes through a Share, which gives back whatever it still holds when the
 * call ends, so a write callback that never fires (a destroyed call) cannot leak budget.
 */
export class MemoryBudget {
  private heldBytes = 0;
  private readonly waiting = new Set<() => void>();

  constructor(readonly totalBytes: number) {}

  get held(): number {
    return this.heldBytes;
  }

  /** True while nothing more may start (a call holding nothing may still start one piece of work). */
  get exhausted(): boolean {
    return this.heldBytes >= this.totalBytes;
  }

  /** Calls `wake` once, when bytes are given back (at once if the budget is not exhausted). */
  whenAvailable(wake: () => void): () => void {
    if (!this.exhausted) {
      wake();
      return () => {};
    }
    this.waiting.add(wake);
    return () => this.waiting.delete(wake);
  }

  share(): Share {
    return new Share(this);
  }

  /** Calls waiting for room, for tests and diagnostics. */
  get waiters(): number {
    return this.waiting.size;
  }

  /** @internal (Share) */
  adjust(delta: number): void {
    this.heldBytes += delta;
    if (delta < 0 && !this.exhausted && this.waiting.size > 0) {
      const wake = [...this.waiting];
      this.waiting.clear();
      for (const w of wake) w();
    }
  }
}

/** One call's part of the budget. */
export class Share {
  private heldBytes = 0;
  private closed = false;
  /** Set while room() waits. */
  private wake: (() => void) | undefined;

  constructor(private readonly budget: MemoryBudget) {}

  get held(): number {
    return this.heldBytes;
  }

  /**
   * Whether this call may start more work now: the budget has room, or this call holds nothing
   * (so that every call makes progress, one piece of work at a time, whatever the others hold).
   */
  get mayStart(): boolean {
    return !this.budget.exhausted || this.heldBytes === 0;
  }

  /** Resolves when mayStart holds; rejects with `signal`'s reason if it aborts first. */
  async room(signal: AbortSignal): Promise<void> {
    while (!this.mayStart) {
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        let cancel = () => {};
        const finish = () => {
          cancel();
          this.wake = undefined;
          signal.removeEventListener('abort', onAbort);
        };
        const onAbort = () => {
          finish();
          reject(signal.reason);
        };
        // Woken when the budget has room again, or when this call's own bytes are all given back
        // (its last answer flushed): either makes mayStart true.
        this.wake = () => {
          finish();
          resolve();
        };
        cancel = this.budget.whenAvailable(this.wake);
        signal.addEventListener('abort', onAbort, { once: true });
      });
      // Others woken at the same time may have taken the room: the loop waits again if so.
    }
  }

  take(bytes: number): void {
    if (this.closed || bytes <= 0) return;
    this.heldBytes += bytes;
    this.budget.adjust(bytes);
  }

  give(bytes: number): void {
    const n = Math.min(bytes, this.heldBytes);
    if (n <= 0) return;
    this.heldBytes -= n;
    this.budget.adjust(-n);
    // Holding nothing, this call may start again even while others keep the budget exhausted.
    if (this.heldBytes === 0) this.wake?.();
  }

  /** The call is over: everything it still holds goes back. */
  close(): void {
    this.give(this.heldBytes);
    this.closed = true;
  }
}
