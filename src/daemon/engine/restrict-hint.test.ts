// The engine's af_alg_restrict reading agrees with the probe's: one it cannot read restricts
// (review by helper-120: the probe said "taken as restricted", the engine said nothing).
import { describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../../native-ffi/syscall-error.js';

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const readFileSync = ((path: string, ...rest: unknown[]) => {
    if (String(path) === '/proc/sys/crypto/af_alg_restrict') throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
    return (real.readFileSync as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof real.readFileSync;
  return { ...real, readFileSync, default: { ...real, readFileSync } };
});

const { fromKernel } = await import('./errors.js');

describe('fromKernel with an unreadable af_alg_restrict', () => {
  it('an algorithm the kernel does not give is reported as possibly restricted, with the hint', () => {
    const e = fromKernel(new SyscallError('bind', 2, 'gcm(aes)'), 'open', 'gcm(aes)');
    expect(e.code).toBe('ALGORITHM_UNAVAILABLE');
    expect(e.restricted).toBe(true);
    expect(e.message).toMatch(/^gcm\(aes\): not offered by this kernel to this process \(af_alg_restrict=unreadable: unprivileged processes get no AF_ALG/);
  });
});
