import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkSent } from '../../../native-ffi/af-alg.js';
import { fromKernel } from './errors.js';
import { estimatedRequestBound } from './request-bound.js';

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
    const optmem = readFileSync('/proc/sys/net/core/optmem_max', 'utf8').trim();
    expect(e.message).toBe(`gcm(aes) with key 5: request larger than the kernel will buffer (AF_ALG bounds a request by net.core.optmem_max, ${optmem} in the daemon's network namespace, which takes about ${(estimatedRequestBound(Number(optmem)) / 1048576).toFixed(1)} MiB; lower the daemon's payload limits, or raise it: docs/operations.md, Limits)`);
  });
});
