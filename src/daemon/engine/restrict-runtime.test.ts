// af_alg_restrict changed while the daemon runs (root's `sysctl -w`): each engine error reads it as it
// is now. Found by review (helper-179), in the 7.3 test VM: 0 -> 1 -> 2 while ringfenced ran, and an
// encryption at 2 said "this kernel has no AF_ALG (CONFIG_CRYPTO_USER_API*)".
import { describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../../native-ffi/syscall-error.js';

const sysctl = vi.hoisted(() => ({ value: '1\n' }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const readFileSync = ((path: string, ...rest: unknown[]) => {
    if (String(path) === '/proc/sys/crypto/af_alg_restrict') return sysctl.value;
    return (real.readFileSync as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof real.readFileSync;
  return { ...real, readFileSync, default: { ...real, readFileSync } };
});

const { fromKernel } = await import('./errors.js');

describe('fromKernel after af_alg_restrict changed at run time', () => {
  it('names the value the kernel has now, and 2 as switching AF_ALG off, not a kernel without it', () => {
    sysctl.value = '1\n';
    expect(fromKernel(new SyscallError('bind', 2, 'gcm(aes)'), 'open', 'gcm(aes)', 'aead').message).toMatch(/af_alg_restrict=1:/);
    sysctl.value = '2\n';
    const off = fromKernel(new SyscallError('socket', 97, 'AF_ALG'), 'open', 'ccm(aes)', 'aead');
    expect(off.code).toBe('AF_ALG_UNAVAILABLE');
    expect(off.message).toBe('af_alg_restrict=2 switches AF_ALG off for every process, the daemon included: set it to 1 or 0');
    sysctl.value = '0\n';
    const gone = fromKernel(new SyscallError('bind', 2, 'gcm(aes)'), 'open', 'gcm(aes)', 'aead');
    expect(gone.restricted).toBe(false);
    expect(gone.message).not.toMatch(/af_alg_restrict/);
  });
});
