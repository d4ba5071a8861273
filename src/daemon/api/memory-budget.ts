/**
 * The daemon-wide bound on what Sessions, crypto streams and unary CryptoService calls buffer
 * (Limits.maxBufferedBytes), and each caller's part of it (maxBufferedBytesPerCaller). Each call
 * already bounds its own share (maxSessionBufferedBytes, a stream's few chunks, a unary call's one
 * request and answer); this bounds their sum, which many calls from many connections could
 * otherwise push past the host's memory, and keeps one caller (a uid) whose clients read nothing
 * from holding all of it. A unary call counts its request and answer from the start of its work
 * until grpc-js reports it over (handler.ts unary): an answer its client does not read stays in
 * the daemon, held by HTTP/2 flow control, and counts until the client reads or resets it.
 * At either bound, calls stop starting work and so stop reading: HTTP/2 flow control then holds
 * their clients' data in the clients, and they go on as soon as answers are flushed. A unary call,
 * whose request grpc-js has read already, waits before its work instead. Slowed down, never refused
 * (but a unary call still waiting when the daemon stops ends then: handler.ts unary).
 *
 * So that a caller's calls still make progress while some of its own clients (or other callers)
 * hold the room, a call that holds nothing may start one piece of work beyond the bounds: at most
 * EXEMPT_CALLS_PER_CALLER such calls per caller at a time, so that a caller opening many calls
 * cannot turn this into room of its own. A caller therefore holds at most its part, plus the last
 * piece of work started below it, plus that many more.
 *
 * Each call takes its bytes through a Share, which gives back whatever it still holds when the
 * call ends, so a write callback that never fires (a destroyed call) cannot leak budget.
 */
type Wake = () => void;

/** Calls per caller that may start work beyond the bounds while holding nothing. */
export const EXEMPT_CALLS_PER_CALLER = 4;

interface Caller {
  held: number;
  shares: number;
  /** Shares holding bytes they took beyond the bounds (see Share.exempt). */
  exempt: number;
  /** Waiting shares that held bytes when they began to wait: they need room in the bounds. */
  readonly waitingHolding: Set<Wake>;
  /** Waiting shares that held nothing: an exemption freeing up also lets them start. */
  readonly waitingEmpty: Set<Wake>;
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

  /** True while the daemon-wide bound is reached. */
  get exhausted(): boolean {
    return this.heldBytes >= this.totalBytes;
  }

  /** A share for one call of `caller` (the principal's uid; calls of one caller count together). */
  share(caller = ''): Share {
    this.entry(caller).shares++;
    return new Share(this, caller);
  }

  /** Calls waiting for room, for tests and diagnostics. */
  get waiters(): number {
    let n = 0;
    for (const c of this.callers.values()) n += c.waitingHolding.size + c.waitingEmpty.size;
    return n;
  }

  /** Callers with an entry, for tests: one without shares, bytes or waiters is forgotten. */
  get callerCount(): number {
    return this.callers.size;
  }

  /** @internal (Share) Whether `caller` has room within both bounds. */
  hasRoom(caller: string): boolean {
    return !this.exhausted && this.heldBy(caller) < this.perCallerBytes;
  }

  /** @internal (Share) Whether another of `caller`'s calls may start beyond the bounds. */
  exemptionFree(caller: string): boolean {
    return (this.callers.get(caller)?.exempt ?? 0) < EXEMPT_CALLS_PER_CALLER;
  }

  /** @internal (Share) */
  exemption(caller: string, delta: 1 | -1): void {
    this.entry(caller).exempt += delta;
    if (delta < 0) this.wakeWhoMayStart();
  }

  /** @internal (Share) Calls `wake` once when a share of `caller` may start again; returns a cancel. */
  waitFor(caller: string, holding: boolean, wake: Wake): () => void {
    const c = this.entry(caller);
    const set = holding ? c.waitingHolding : c.waitingEmpty;
    set.add(wake);
    return () => {
      set.delete(wake);
      this.forgetIfIdle(caller);
    };
  }

  /** @internal (Share) */
  adjust(caller: string, delta: number): void {
    const c = this.entry(caller);
    this.heldBytes += delta;
    c.held += delta;
    if (delta < 0) this.wakeWhoMayStart();
  }

  /** @internal (Share) The share is closed. */
  closed(caller: string): void {
    this.entry(caller).shares--;
    this.forgetIfIdle(caller);
  }

  /** Bytes or an exemption went back: wakes the waiters that may start now (each re-checks). */
  private wakeWhoMayStart(): void {
    for (const [name, c] of this.callers) {
      // Most callers wait for nothing: no arrays made for them (this runs on every unary call's end).
      if (c.waitingHolding.size === 0 && c.waitingEmpty.size === 0) continue;
      const room = this.hasRoom(name);
      const woken = room ? [...c.waitingHolding, ...c.waitingEmpty] : c.exempt < EXEMPT_CALLS_PER_CALLER ? [...c.waitingEmpty] : [];
      if (woken.length === 0) continue;
      if (room) c.waitingHolding.clear();
      c.waitingEmpty.clear();
      for (const w of woken) w();
    }
  }

  private entry(caller: string): Caller {
    let c = this.callers.get(caller);
    if (!c) this.callers.set(caller, (c = { held: 0, shares: 0, exempt: 0, waitingHolding: new Set(), waitingEmpty: new Set() }));
    return c;
  }

  private forgetIfIdle(caller: string): void {
    const c = this.callers.get(caller);
    if (c && c.shares === 0 && c.held === 0 && c.exempt === 0 && c.waitingHolding.size === 0 && c.waitingEmpty.size === 0) this.callers.delete(caller);
  }
}

/** One call's part of the budget. */
export class Share {
  private heldBytes = 0;
  private isClosed = false;
  /** It took its bytes beyond the bounds while holding nothing; counted against its caller's exemptions until it holds nothing again. */
  private exempt = false;
  /** Set while whenMayStart waits. */
  private wake: Wake | undefined;
  private cancelWait: (() => void) | undefined;
  /** Set while reserve() waits: close() ends that wait. */
  private reserving: (() => void) | undefined;

  constructor(
    private readonly budget: MemoryBudget,
    private readonly caller: string,
  ) {}

  get held(): number {
    return this.heldBytes;
  }

  /**
   * Whether this call may start more work now: the budget and its caller's part have room, or this
   * call holds nothing and its caller has an exemption free (EXEMPT_CALLS_PER_CALLER).
   */
  get mayStart(): boolean {
    return this.budget.hasRoom(this.caller) || (this.heldBytes === 0 && this.budget.exemptionFree(this.caller));
  }

  /**
   * Calls `wake` once, when mayStart may hold again: bytes or an exemption went back, or this
   * call's own bytes were all given back. At once if it holds now. Returns a cancel. One wait at a
   * time per share.
   */
  whenMayStart(wake: Wake): () => void {
    if (this.mayStart) {
      wake();
      return () => {};
    }
    let cancelBudget = () => {};
    const cancel = () => {
      cancelBudget();
      if (this.wake === once) {
        this.wake = undefined;
        this.cancelWait = undefined;
      }
    };
    const once = () => {
      cancel();
      wake();
    };
    this.wake = once;
    this.cancelWait = cancel;
    cancelBudget = this.budget.waitFor(this.caller, this.heldBytes > 0, once);
    return cancel;
  }

  /**
   * Takes `bytes` as soon as mayStart holds; rejects with `signal`'s reason if it aborts first.
   * The check and the take happen in one synchronous step: every waiter woken at once re-checks
   * after those before it took, so together they go no further beyond the bounds than one may.
   */
  async reserve(bytes: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      signal.throwIfAborted();
      if (this.isClosed) throw new Error('the call ended while it waited for room in the buffer budget');
      if (this.mayStart) break;
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          cancel();
          this.reserving = undefined;
          reject(signal.reason);
        };
        const cancel = this.whenMayStart(() => {
          signal.removeEventListener('abort', onAbort);
          this.reserving = undefined;
          resolve();
        });
        signal.addEventListener('abort', onAbort, { once: true });
        // close() cancels the wait: this goes on, to find the share closed.
        this.reserving = () => {
          signal.removeEventListener('abort', onAbort);
          this.reserving = undefined;
          resolve();
        };
      });
    }
    this.take(bytes);
  }

  /**
   * Counts `bytes` more for this call. Work starts only once mayStart held (reserve, or a check in
   * the same synchronous step); a call that already holds bytes may grow (an answer larger than
   * foreseen) without another check.
   */
  take(bytes: number): void {
    if (this.isClosed || bytes <= 0) return;
    if (this.heldBytes === 0 && !this.exempt && !this.budget.hasRoom(this.caller)) {
      this.exempt = true;
      this.budget.exemption(this.caller, 1);
    }
    this.heldBytes += bytes;
    this.budget.adjust(this.caller, bytes);
  }

  give(bytes: number): void {
    const n = Math.min(bytes, this.heldBytes);
    if (n <= 0) return;
    this.heldBytes -= n;
    this.budget.adjust(this.caller, -n);
    if (this.heldBytes > 0) return;
    if (this.exempt) {
      this.exempt = false;
      this.budget.exemption(this.caller, -1);
    }
    // Holding nothing, this call may start again even while others keep the budget exhausted.
    this.wake?.();
  }

  /** The call is over: everything it still holds goes back; a wait still pending is cancelled, and a reserve() waiting throws. */
  close(): void {
    if (this.isClosed) return;
    const reserving = this.reserving;
    this.cancelWait?.();
    this.give(this.heldBytes);
    this.isClosed = true;
    this.budget.closed(this.caller);
    reserving?.();
  }
}
