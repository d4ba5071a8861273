import { call } from './libc.js';

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
