import { constants } from 'node:os';
import { describe, expect, it, vi } from 'vitest';
import * as libc from './libc.js';
import { getRandom, getRandomAsync } from './random.js';
import { SyscallError } from './syscall-error.js';
import { countLoopTurns } from '../test/support/loop-turns.js';

// The real calls, through spies, so that a test can make one of them fail with an errno.
vi.mock('./libc.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('./libc.js')>();
  return { ...real, call: vi.fn(real.call), callAsync: vi.fn(real.callAsync) };
});

describe('getRandom', () => {
  it('returns the requested length, including zero and more than one page', () => {
    for (const n of [0, 1, 12, 4096, 1 << 20]) expect(getRandom(n).length).toBe(n);
  });

  it('does not repeat itself and is not all zeros', () => {
    const a = getRandom(32);
    const b = getRandom(32);
    expect(a.equals(b)).toBe(false);
    expect(a.equals(Buffer.alloc(32))).toBe(false);
  });

  it('has about 8 bits of entropy per byte over 1 MiB (byte histogram within 6 sigma)', () => {
    const buf = getRandom(1 << 20);
    const counts = new Array<number>(256).fill(0);
    for (const b of buf) counts[b]!++;
    const expected = buf.length / 256;
    const sigma = Math.sqrt(expected);
    for (const c of counts) expect(Math.abs(c - expected)).toBeLessThan(6 * sigma);
  });

  it('retries EINTR and throws other errnos', () => {
    vi.mocked(libc.call).mockImplementationOnce(() => {
      throw new SyscallError('getrandom', constants.errno.EINTR);
    });
    expect(getRandom(64).length).toBe(64);
    vi.mocked(libc.call).mockImplementationOnce(() => {
      throw new SyscallError('getrandom', constants.errno.ENOSYS);
    });
    expect(() => getRandom(64)).toThrow(/ENOSYS/);
  });
});

describe('getRandomAsync', () => {
  it('returns the requested length, fresh and not all zeros', async () => {
    for (const n of [0, 1, 4096, 1 << 20]) expect((await getRandomAsync(n)).length).toBe(n);
    const [a, b] = await Promise.all([getRandomAsync(1 << 16), getRandomAsync(1 << 16)]);
    expect(a!.equals(b!)).toBe(false);
    expect(a!.equals(Buffer.alloc(1 << 16))).toBe(false);
    // Not one block repeated: a buffer left unwritten, or filled from one short read, would be.
    expect(a!.subarray(0, 32).equals(a!.subarray(32, 64))).toBe(false);
  });

  it('runs on the libuv pool: the event loop turns while 4 MiB are made', async () => {
    const loop = countLoopTurns();
    const out = await getRandomAsync(4 << 20);
    const turns = loop.stop();
    expect(out.length).toBe(4 << 20);
    expect(turns).toBeGreaterThan(0);
  });

  it('retries EINTR and throws other errnos, as getRandom does', async () => {
    vi.mocked(libc.callAsync).mockRejectedValueOnce(new SyscallError('getrandom', constants.errno.EINTR));
    const out = await getRandomAsync(1 << 16);
    expect(out.length).toBe(1 << 16);
    expect(out.equals(Buffer.alloc(1 << 16))).toBe(false);
    vi.mocked(libc.callAsync).mockRejectedValueOnce(new SyscallError('getrandom', constants.errno.ENOSYS));
    await expect(getRandomAsync(64)).rejects.toThrow(/ENOSYS/);
  });
});
