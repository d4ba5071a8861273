import { describe, expect, it } from 'vitest';
import { estimatedRequestBound } from './request-bound.js';

const MiB = 1024 * 1024;

describe('estimatedRequestBound', () => {
  // Largest requests (plaintext plus associated data) measured in the lts guest (6.12, CCM seal), by
  // bisection to 16 KiB: the same with no associated data and with 64 KiB of it.
  it.each([
    [20480, 0.62],
    [131072, 4.92],
    [262144, 9.92],
  ])('stays under what the kernel took at optmem_max %i (%f MiB), within 10 %%', (optmem, measuredMiB) => {
    const bound = estimatedRequestBound(optmem);
    expect(bound).toBeLessThanOrEqual(measuredMiB * MiB);
    expect(bound).toBeGreaterThan(0.9 * measuredMiB * MiB);
  });

  it('lets the default limits through at the default since Linux 6.9, not at the default before it', () => {
    const defaults = MiB + 64 * 1024 + 64 * 1024; // payload + associated data + envelope allowance
    expect(estimatedRequestBound(131072)).toBeGreaterThan(defaults);
    expect(estimatedRequestBound(20480)).toBeLessThan(defaults);
  });
});
