/**
 * What each kernel of the test matrix is known to allow a privileged process (measured; see
 * ../shared/KERNEL-TESTBED.md and the probe output in docs/). Kernel tests assert against this, so
 * a kernel that silently changes what it offers fails loudly.
 */
export type MatrixKernel = 'lts' | 'restricted';

export function currentKernel(): MatrixKernel {
  const k = process.env.RINGFENCE_KERNEL;
  if (k !== 'lts' && k !== 'restricted') {
    throw new Error(`kernel tests run inside the test VM (npm run test:kernel), which sets RINGFENCE_KERNEL; got ${k ?? 'nothing'}`);
  }
  return k;
}

/** Suites af_alg_restrict=1 refuses even to root (everything else must work). */
export const RESTRICTED_FOR_ROOT = new Set<string>(['aes-256-gcm', 'chacha20-poly1305', 'sha3-256', 'sha3-512', 'blake2b-256', 'blake2b-512']);

export function suiteExpectedAvailable(suite: string): boolean {
  return currentKernel() === 'lts' || !RESTRICTED_FOR_ROOT.has(suite);
}
