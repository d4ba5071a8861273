// Under af_alg_restrict=1, ENOENT for an algorithm on the allowlist is a missing module, not the
// restriction: the engine says so, as the probe does (FAILED_PRECONDITION SUITE_UNAVAILABLE, not
// SUITE_RESTRICTED_BY_KERNEL). Tests run as root, so this process is privileged.
import { describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../../native-ffi/syscall-error.js';

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const readFileSync = ((path: string, ...rest: unknown[]) => {
    if (String(path) === '/proc/sys/crypto/af_alg_restrict') return '1\n';
    return (real.readFileSync as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof real.readFileSync;
  return { ...real, readFileSync, default: { ...real, readFileSync } };
});

const { fromKernel } = await import('./errors.js');
const enoent = (name: string) => new SyscallError('bind', 2, name);

describe('fromKernel on ENOENT with af_alg_restrict=1', () => {
  it('an allowlisted algorithm (ccm(aes)) is missing from the kernel, not restricted', () => {
    const e = fromKernel(enoent('ccm(aes)'), 'open', 'ccm(aes)', 'aead');
    expect(e.code).toBe('ALGORITHM_UNAVAILABLE');
    expect(e.restricted).toBe(false);
    expect(e.message).toBe("ccm(aes): not offered by this kernel (it is on af_alg_restrict's allowlist: the kernel lacks its module)");
  });

  it('gcm(aes), not on the allowlist, is restricted', () => {
    const e = fromKernel(enoent('gcm(aes)'), 'open', 'gcm(aes)', 'aead');
    expect(e.restricted).toBe(true);
    expect(e.message).toMatch(/^gcm\(aes\): not offered by this kernel to this process \(af_alg_restrict=1: /);
  });

  it('the allowlist is by type: sha256 as an aead is not on it', () => {
    expect(fromKernel(enoent('sha256'), 'open', 'sha256', 'aead').restricted).toBe(true);
    expect(fromKernel(enoent('sha256'), 'open', 'sha256', 'hash').restricted).toBe(false);
  });
});
