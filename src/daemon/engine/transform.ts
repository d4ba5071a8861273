/**
 * One AF_ALG transform: a socket bound to an algorithm and keyed by a kernel key serial, plus a
 * bounded pool of operation sockets accepted from it. The key is copied into the transform by the
 * kernel at keying time; ringfence never sees it.
 */
import * as afAlg from '../../../native-ffi/af-alg.js';
import type { KernelAlg } from '../../capabilities/suites.js';
import { EngineError, fromKernel } from './errors.js';
import { FairQueue } from '../../../native-ffi/fair-queue.js';

export interface TransformSpec {
  alg: KernelAlg;
  /** Kernel key serial; absent for unkeyed hashes. */
  serial?: number;
  /** AEAD tag bytes (ALG_SET_AEAD_AUTHSIZE). */
  authSize?: number;
}

export interface PoolOptions {
  /** Operation sockets per transform; requests beyond wait their turn. */
  maxOpSockets: number;
  /** Requests that may wait for an operation socket of one transform; more are refused (BUSY). */
  maxQueuedRequests: number;
  /** Of maxQueuedRequests, how many one caller (owner) may have waiting; more of its own are refused (BUSY). */
  maxQueuedRequestsPerCaller: number;
  /** Largest single AEAD/skcipher request; operation socket buffers are sized for it. */
  maxRequestBytes: number;
}

export function describeSpec(spec: TransformSpec): string {
  return `${spec.alg.name}${spec.serial !== undefined ? ` with key ${spec.serial}` : ''}`;
}

export class Transform {
  readonly spec: TransformSpec;
  private readonly fd: number;
  private readonly idle: number[] = [];
  private busy = 0;
  /** Sockets handed out with acceptDedicated(), outside the pool. */
  private dedicated = 0;
  /** Requests waiting for a socket, served in turns across callers (native-ffi/fair-queue.ts). */
  private readonly waiters: FairQueue<number>;
  private closed = false;
  /** What one request may carry on each operation socket (its buffers, as the kernel granted them). */
  private readonly capacity = new Map<number, { send: number; receive: number }>();

  constructor(spec: TransformSpec, private readonly opts: PoolOptions) {
    this.spec = spec;
    this.waiters = new FairQueue(opts.maxQueuedRequests, opts.maxQueuedRequestsPerCaller);
    const what = describeSpec(spec);
    let fd: number;
    try {
      fd = afAlg.openTransform(spec.alg.type, spec.alg.name);
    } catch (err) {
      throw fromKernel(err, 'open', spec.alg.name, spec.alg.type);
    }
    try {
      if (spec.serial !== undefined) {
        try {
          afAlg.setKeyBySerial(fd, spec.serial);
        } catch (err) {
          throw fromKernel(err, 'key', what);
        }
      }
      if (spec.authSize !== undefined) {
        try {
          afAlg.setAeadAuthSize(fd, spec.authSize);
        } catch (err) {
          throw fromKernel(err, 'authsize', what);
        }
      }
    } catch (err) {
      afAlg.closeFd(fd);
      throw err;
    }
    this.fd = fd;
  }

  /**
   * Takes an operation socket, waiting if all are busy. Pair with release() or discard(). The queue
   * is bounded: a flood of requests for one key is refused, not held in memory with its payloads.
   * `owner` is who asks (a caller's uid key; '' for the daemon's own work): waiting requests are
   * served in turns across owners, and each owner's share of the queue is bounded.
   */
  async acquire(owner = ''): Promise<number> {
    const fd = this.tryAcquire();
    if (fd !== undefined) return fd;
    const full = this.waiters.full(owner);
    if (full === 'total') {
      throw new EngineError('BUSY', `${describeSpec(this.spec)}: ${this.waiters.length} requests are already waiting for this key, the daemon's limit (maxQueuedRequests); retry later`, { limit: 'queued_requests' });
    }
    if (full === 'owner') {
      throw new EngineError('BUSY', `${describeSpec(this.spec)}: this caller already has ${Math.min(this.opts.maxQueuedRequestsPerCaller, this.opts.maxQueuedRequests)} requests waiting for this key, its share (maxQueuedRequestsPerCaller); wait for answers before sending more`, { limit: 'queued_requests_per_caller' });
    }
    return new Promise((resolve, reject) => this.waiters.push(owner, { resolve, reject }));
  }

  /**
   * An operation socket of its own, outside the pool, for a caller that holds one for as long as
   * its client likes (a hash stream): held pool sockets would stall every other request for the
   * transform. Close it with closeDedicated(); the caller bounds how many it holds.
   */
  acceptDedicated(): number {
    if (this.closed) throw new EngineError('INTERNAL', `${describeSpec(this.spec)}: transform closed`);
    const fd = this.accept();
    this.dedicated++;
    return fd;
  }

  closeDedicated(fd: number): void {
    this.closeOp(fd);
    this.dedicated--;
  }

  /** An operation socket now, or undefined if the pool is exhausted. */
  tryAcquire(): number | undefined {
    if (this.closed) throw new EngineError('INTERNAL', `${describeSpec(this.spec)}: transform closed`);
    const fd = this.idle.pop();
    if (fd !== undefined) {
      this.busy++;
      return fd;
    }
    if (this.busy >= this.opts.maxOpSockets) return undefined;
    const op = this.accept();
    this.busy++;
    return op;
  }

  private accept(): number {
    let op: number;
    try {
      op = afAlg.acceptOp(this.fd);
    } catch (err) {
      throw fromKernel(err, 'request', describeSpec(this.spec));
    }
    if (this.spec.alg.type !== 'hash') {
      try {
        // The kernel doubles the value asked for; the headroom covers AAD and tag.
        this.capacity.set(op, afAlg.sizeBuffers(op, this.opts.maxRequestBytes + 65536));
      } catch (err) {
        afAlg.closeFd(op);
        throw fromKernel(err, 'request', describeSpec(this.spec));
      }
    }
    return op;
  }

  /** Input and output bytes one request may carry on `fd` (unlimited for hashes, which stream). */
  capacityOf(fd: number): { send: number; receive: number } {
    return this.capacity.get(fd) ?? { send: Infinity, receive: Infinity };
  }

  /** Returns a socket after a request that completed normally. */
  release(fd: number): void {
    const next = this.waiters.shift();
    if (next) return next.resolve(fd);
    this.busy--;
    if (this.closed) this.closeOp(fd);
    else this.idle.push(fd);
  }

  /** Closes a socket whose request failed: its kernel-side state is not trusted for reuse. */
  discard(fd: number): void {
    this.closeOp(fd);
    this.busy--;
    // Hand the freed slot on; if accepting fails, that waiter learns why and the next one tries.
    while (this.waiters.length && this.busy < this.opts.maxOpSockets && !this.closed) {
      const next = this.waiters.shift()!;
      try {
        next.resolve(this.tryAcquire()!);
        return;
      } catch (err) {
        next.reject(err);
      }
    }
  }

  private closeOp(fd: number): void {
    this.capacity.delete(fd);
    try {
      afAlg.closeFd(fd);
    } catch {
      // EBADF cannot happen for a socket we own; nothing useful to do with any other close error.
    }
  }

  /** Sockets in use: pool sockets taken, plus dedicated ones. */
  get inUse(): number {
    return this.busy + this.dedicated;
  }

  /** Closes idle sockets now and busy ones as they are released. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.idle.splice(0)) this.closeOp(fd);
    for (const w of this.waiters.drain()) w.reject(new EngineError('KEY_UNUSABLE', `${describeSpec(this.spec)}: transform closed`));
    afAlg.closeFd(this.fd);
  }
}
