import { describe, expect, it } from 'vitest';
import { getRandom } from './random.js';

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
});
