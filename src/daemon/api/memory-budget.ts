/**
 * The daemon-wide bound on what Sessions and crypto streams buffer (Limits.maxBufferedBytes), and
 * each caller's part of it (maxBufferedBytesPerCaller). Each call already bounds its own share
 * (maxSessionBufferedBytes, a stream's few chunks); this bounds their sum, which many calls from
 * many connections could otherwise push past the host's memory, and keeps one caller (a uid) whose
 * clients read nothing from holding all of it.
 * At either bound, calls stop starting work and so stop reading: HTTP/2 flow control then holds
 * their clients' data in the clients, and they go on as soon as answers are flushed. Slowed down,
 * never refused.
 *
 * Each call takes its bytes through a Share, which gives back whatever it still holds when the
 * call ends, so a write callback that never fires (a destroyed call) cannot leak budget.
 */
type Wake = () => void;

interface Caller {
  held: number;
  shares: number;
  readonly waiting: Set<Wake>;
}

export class MemoryBudget {
  private heldBytes = 0;
  private readonly callers = new Map<string, Caller>();

  /** `perCallerBytes`: what one caller's calls may hold together (at most the total). */
  constructor(
    readonly totalBytes: number,
    readonly perCallerBytes: number = totalBytes,
  ) {}

  get held(): number {
    return this.heldBytes;
  }

  /** What one caller's calls hold now. */
  heldBy(caller: string): number {
    return this.callers.get(caller)?.held ?? 0;
  }

  /** True while nothing more may start anywhere (a call holding nothing may still start one piece of work). */
  get exhausted(): boolean {
    return this.heldBytes >= this.totalBytes;
  }

  /** A share for one call of `caller` (the principal's uid; calls of one caller count together). */
  share(caller = ''): Share {
    let c = this.callers.get(caller);
    if (!c) this.callers.set(caller, (c = { held: 0, shares: 0, waiting: new Set() }));
    c.shares++;
    return new Share(this, caller);
  }

  /** Calls waiting for room, for tests and diagnostics. */
  get waiters(): number {
    let n = 0;
    for (const c of this.callers.values()) n += c.waiting.size;
    return n;
  }

  /** @internal (Share) */
  exhaustedFor(caller: string): boolean {
    return this.exhausted || this.heldBy(caller) >= this.perCallerBytes;
  }

  /** @internal (Share) Calls `wake` once, when `caller` may start again; returns a cancel. */
  waitFor(caller: string, wake: Wake): () => void {
    const c = this.callers.get(caller)!;
    c.waiting.add(wake);
    return () => c.waiting.delete(wake);
  }

  /** @internal (Share) */
  adjust(caller: string, delta: number): void {
    const c = this.callers.get(caller)!;
    this.heldBytes += delta;
    c.held += delta;
    if (delta >= 0 || this.exhausted) return;
    // Bytes went back: every caller below its own part may start again (the woken re-check).
    for (const other of this.callers.values()) {
      if (other.waiting.size === 0 || other.held >= this.perCallerBytes) continue;
      const wake = [...other.waiting];
      other.waiting.clear();
      for (const w of wake) w();
    }
  }

  /** @internal (Share) The share is closed: forget a caller with nothing left. */
  closed(caller: string): void {
    const c = this.callers.get(caller)!;
    if (--c.shares === 0 && c.held === 0 && c.waiting.size === 0) this.callers.delete(caller);
  }
}

/** One call's part of the budget. */
export class Share {
  private heldBytes = 0;
  private isClosed = false;
  /** Set while whenMayStart waits. */
  private wake: Wake | undefined;

  constructor(
    private readonly budget: MemoryBudget,
    private readonly caller: string,
  ) {}

  get held(): number {
    return this.heldBytes;
  }

  /**
   * Whether this call may start more work now: the budget and its caller's part have room, or this
   * call holds nothing (so that every call makes progress, one piece of work at a time, whatever
   * the others hold).
   */
  get mayStart(): boolean {
    return this.heldBytes === 0 || !this.budget.exhaustedFor(this.caller);
  }

  /**
   * Calls `wake` once, when mayStart may hold again: bytes went back to the budget or to this
   * caller's part, or this call's own bytes were all given back. At once if it holds now. Returns a
   * cancel. One wait at a time per share.
   */
  whenMayStart(wake: Wake): () => void {
    if (this.mayStart) {
      wake();
      return () => {};
    }
    let cancelBudget = () => {};
    const cancel = () => {
      cancelBudget();
      if (this.wake === once) this.wake = undefined;
    };
    const once = () => {
      cancel();
      wake();
    };
    this.wake = once;
    cancelBudget = this.budget.waitFor(this.caller, once);
    return cancel;
  }

  /** Resolves when mayStart holds; rejects with `signal`'s reason if it aborts first. */
  async room(signal: AbortSignal): Promise<void> {
    while (!this.mayStart) {
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          cancel();
          reject(signal.reason);
        };
        const cancel = this.whenMayStart(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
        signal.addEventListener('abort', onAbort, { once: true });
      });
      // Others woken at the same time may have taken the room: the loop waits again if so.
    }
  }

  take(bytes: number): void {
    if (this.isClosed || bytes <= 0) return;
    this.heldBytes += bytes;
    this.budget.adjust(this.caller, bytes);
  }

  give(bytes: number): void {
    const n = Math.min(bytes, this.heldBytes);
    if (n <= 0) return;
    this.heldBytes -= n;
    this.budget.adjust(this.caller, -n);
    // Holding nothing, this call may start again even while others keep the budget exhausted.
    if (this.heldBytes === 0) this.wake?.();
  }

  /** The call is over: everything it still holds goes back. */
  close(): void {
    if (this.isClosed) return;
    this.wake = undefined;
    this.give(this.heldBytes);
    this.isClosed = true;
    this.budget.closed(this.caller);
  }
}
