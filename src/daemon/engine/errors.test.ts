import { describe, expect, it } from 'vitest';
import { checkSent } from '../../../native-ffi/af-alg.js';
import { fromKernel } from './errors.js';
import { estimatedRequestBound, readOptmemMax } from './request-bound.js';

describe('fromKernel', () => {
  it('a short AF_ALG send is PAYLOAD_TOO_LARGE, as the kernel\'s EAGAIN is, not INTERNAL (review by helper-116)', () => {
    let err: unknown;
    try {
      checkSent(4096, 10_000);
    } catch (e) {
      err = e;
    }
    const e = fromKernel(err, 'request', 'gcm(aes) with key 5');
    expect(e.code).toBe('PAYLOAD_TOO_LARGE');
    // Names the sysctl that bounds it, and its value here (review by helper-137).
    const optmem = readOptmemMax();
    const hint =
      optmem === undefined
        ? ' (AF_ALG bounds a request by net.core.optmem_max)'
        : optmem === 'host-only'
          ? " (AF_ALG bounds a request by net.core.optmem_max, the host's: kernels before 6.8 do not show it in the daemon's network namespace; raise it on the host, or lower the daemon's payload limits: docs/operations.md, Limits)"
          : ` (AF_ALG bounds a request by net.core.optmem_max, ${optmem} in the daemon's network namespace, which takes about ${(estimatedRequestBound(optmem) / 1048576).toFixed(1)} MiB; lower the daemon's payload limits, or raise it: docs/operations.md, Limits)`;
    expect(e.message).toBe(`gcm(aes) with key 5: request larger than the kernel will buffer${hint}`);
  });
});
