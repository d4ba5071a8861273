import { call, callAsync } from './libc.js';

const GETRANDOM_MAX = 33554431; // the kernel returns at most this many bytes per call

/**
 * getrandom(2) from the kernel's CSPRNG, blocking only until it is first seeded.
 * Errno: EINTR (retried here), ENOSYS (kernel < 3.17).
 */
export function getRandom(length: number): Buffer {
  // Not zero-filled (a pooled slice for small lengths): every byte is written below or we throw.
  const out = Buffer.allocUnsafe(length);
  let off = 0;
  while (off < length) {
    try {
      off += call('getrandom', [out.subarray(off), Math.min(length - off, GETRANDOM_MAX), 0], `getrandom ${length}`);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EINTR') throw err;
    }
  }
  return out;
}

/**
 * getRandom on the libuv pool: the kernel fills about 250 MB/s, so a large request run
 * synchronously stops the event loop (1 MiB: ~4 ms; a thousand at once: seconds, past the
 * watchdog). Still a real getrandom(2) for every byte, as the sync one: no userspace pool, which a
 * cloned VM snapshot would repeat. Same errno handling (EINTR retried). `owner` is whose call it is,
 * for its turn at the pool (libc.ts callAsync).
 */
export async function getRandomAsync(length: number, owner = ''): Promise<Buffer> {
  // Not from Node's shared pool: another thread writes it while the main thread uses the pool.
  const out = Buffer.allocUnsafeSlow(length);
  let off = 0;
  while (off < length) {
    try {
      off += await callAsync('getrandom', [out.subarray(off), Math.min(length - off, GETRANDOM_MAX), 0], `getrandom ${length}`, owner);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EINTR') throw err;
    }
  }
  return out;
}
