/**
 * The single syscall layer: every libc function ringfence calls is declared here, and every call
 * goes through `call` / `callAsync`, which read errno immediately after a failing call.
 *
 * Sync vs async: a koffi sync call costs well under 1 us, an async one 40-60 us (libuv pool round trip,
 * measured natively; see docs/benchmarks.md). Small crypto operations are therefore synchronous;
 * only large ones go to the pool (the engine, and GenerateRandom, decide by size).
 */
import koffi from 'koffi';
import { FairQueue } from './fair-queue.js';
import { SyscallError } from './syscall-error.js';

const lib = koffi.load('libc.so.6');

// Fixed-arity prototypes: variadic functions cannot be called with .async.
export const fns = {
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)'),
  getsockopt: lib.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)'),
  accept4: lib.func('int accept4(int fd, void *addr, void *addrlen, int flags)'),
  sendmsg: lib.func('long sendmsg(int fd, const void *msg, int flags)'),
  sendto: lib.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
  read: lib.func('long read(int fd, void *buf, size_t count)'),
  close: lib.func('int close(int fd)'),
  getrandom: lib.func('long getrandom(void *buf, size_t buflen, unsigned int flags)'),
  flock: lib.func('int flock(int fd, int operation)'),
  sysconf: lib.func('long sysconf(int name)'),
  // Variadic in glibc: called with typed pairs, synchronously (once, at start).
  prctl: lib.func('int prctl(int option, ...)'),
  // keyctl(2) and add_key(2) have no glibc wrappers; they go through syscall(2), which is variadic
  // and therefore synchronous only. Key operations are rare and fast, so that costs nothing.
  syscall: lib.func('long syscall(long number, ...)'),
};

type Fn = (typeof fns)[keyof typeof fns];

const SC_PAGESIZE = 30;
let pageBytes: number | undefined;
/** The kernel's page size (4 KiB on x86-64, 4/16/64 KiB on arm64): AF_ALG budgets socket buffers in pages. */
export function pageSize(): number {
  pageBytes ??= Number(fns.sysconf(SC_PAGESIZE));
  return pageBytes;
}

function check(name: string, ret: number | bigint, detail?: string): number {
  const n = Number(ret);
  if (n < 0) throw new SyscallError(name, koffi.errno(), detail);
  return n;
}

/** Calls a libc function synchronously; throws SyscallError on a negative return. */
export function call(name: keyof typeof fns, args: unknown[], detail?: string): number {
  const fn = fns[name] as (...a: unknown[]) => number | bigint;
  return check(name, fn(...args), detail);
}

/**
 * At most this many async calls run at once; more wait here. koffi refuses calls beyond its own
 * limit (max_async_calls, 256 by default) and the libuv pool has UV_THREADPOOL_SIZE threads (4 by
 * default) shared with fs and dns, so queueing in JS is both safer and no slower.
 */
export const MAX_ASYNC_CALLS = 64;
let running = 0;
/**
 * Calls waiting for a slot, served in turns across owners (fair-queue.ts): a caller with a
 * thousand large requests in flight over many keys delays another caller's call by one of its own,
 * not by all of them. Unbounded here, as before: each key's queue (Transform) already bounds what
 * its callers can have waiting, and a per-owner bound would only refuse work those bounds admitted.
 */
const queued = new FairQueue<void>(Infinity, Infinity);

/**
 * Calls a libc function on the libuv thread pool. koffi restores the worker's errno on the main
 * thread before the callback runs, so errno is still read straight after the call.
 * Buffers passed in must stay referenced until the promise settles (the caller holds them).
 * `owner` is whose call it is (a caller's uid key; '' for the daemon's own work): waiting calls
 * take turns across owners.
 */
export async function callAsync(name: Exclude<keyof typeof fns, 'syscall' | 'prctl'>, args: unknown[], detail?: string, owner = ''): Promise<number> {
  // A finished call hands its slot straight to the next waiter (running stays as it is), so a call
  // arriving meanwhile cannot overtake the queue and the bound holds exactly.
  if (running < MAX_ASYNC_CALLS) running++;
  else await new Promise<void>((resolve, reject) => queued.push(owner, { resolve, reject }));
  try {
    const fn = fns[name] as Fn & { async: (...a: unknown[]) => void };
    return await new Promise((resolve, reject) => {
      fn.async(...args, (err: unknown, ret: number | bigint) => {
        if (err) return reject(err);
        try {
          resolve(check(name, ret, detail));
        } catch (e) {
          reject(e);
        }
      });
    });
  } finally {
    const next = queued.shift();
    if (next) next.resolve();
    else running--;
  }
}

/** syscall(2) with typed variadic arguments: pairs of (koffi type, value). */
export function rawSyscall(name: string, nr: number, typedArgs: unknown[], detail?: string): number {
  return check(name, fns.syscall(nr, ...typedArgs), detail);
}

export function addressOf(buf: Buffer): bigint {
  return koffi.address(buf) as bigint;
}
