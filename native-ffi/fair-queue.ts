/**
 * Waiters for a scarce resource (a transform's operation sockets, src/daemon/engine/transform.ts;
 * the libuv pool's async call slots, libc.ts), served in turns across owners (callers, by uid)
 * rather than first come, first served: a caller with thousands of requests queued delays another
 * caller's request by at most one of its own, not by all of them.
 * Each owner may hold at most `perOwner` waiters, all together at most `total`, so one caller
 * cannot fill the queue and have every other caller of the key refused (review by helper-150).
 * Here, not in src/daemon, so that libc.ts can use it: native-ffi imports nothing from src.
 */
export interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export class FairQueue<T> {
  /** Owners with waiters, in turn order (Map order): the first is served next. */
  private readonly byOwner = new Map<string, Waiter<T>[]>();
  private count = 0;

  constructor(
    private readonly total: number,
    private readonly perOwner: number,
  ) {}

  get length(): number {
    return this.count;
  }

  /** Which bound a new waiter of `owner` would exceed, if any. */
  full(owner: string): 'total' | 'owner' | undefined {
    if (this.count >= this.total) return 'total';
    if ((this.byOwner.get(owner)?.length ?? 0) >= Math.min(this.perOwner, this.total)) return 'owner';
    return undefined;
  }

  /** Queued behind `owner`'s earlier waiters; the caller checks full() first. */
  push(owner: string, waiter: Waiter<T>): void {
    const own = this.byOwner.get(owner);
    if (own) own.push(waiter);
    else this.byOwner.set(owner, [waiter]);
    this.count++;
  }

  /** The next waiter: the oldest of the owner whose turn it is; that owner then goes last. */
  shift(): Waiter<T> | undefined {
    // The common case on every call's end (libc.ts) and socket release: no Map iterator made.
    if (this.count === 0) return undefined;
    for (const [owner, own] of this.byOwner) {
      const next = own.shift()!;
      this.byOwner.delete(owner);
      if (own.length > 0) this.byOwner.set(owner, own);
      this.count--;
      return next;
    }
    return undefined;
  }

  /** Every waiter, emptying the queue. */
  drain(): Waiter<T>[] {
    const all = [...this.byOwner.values()].flat();
    this.byOwner.clear();
    this.count = 0;
    return all;
  }
}
