import { describe, expect, it } from 'vitest';
import { KeyRetries } from './key-retries.js';

describe('KeyRetries', () => {
  it('a key waits from its first failure on, doubling up to the cap; success starts it afresh', () => {
    const r = new KeyRetries({ firstMs: 1000, maxMs: 5000 });
    expect(r.retryTime('a', 0)).toBeNull();
    expect([r.failed('a', 0), r.failed('a', 1000), r.failed('a', 3000), r.failed('a', 7000)]).toEqual([1000, 2000, 4000, 5000]);
    expect(r.retryTime('a', 7000)).toBe(12_000);
    expect(r.retryTime('a', 11_999)).toBe(12_000);
    expect(r.retryTime('a', 12_000)).toBeNull(); // due again
    expect(r.retryTime('b', 7000)).toBeNull(); // per key
    r.succeeded('a');
    expect(r.retryTime('a', 7000)).toBeNull();
    expect(r.failed('a', 7000)).toBe(1000);
  });

  it('a wall clock that stepped back does not hold a key up by more than its delay', () => {
    const r = new KeyRetries({ firstMs: 1000, maxMs: 5000 });
    r.failed('a', 100_000);
    expect(r.retryTime('a', 100_500)).toBe(101_000);
    expect(r.retryTime('a', 99_999)).toBeNull(); // stepped back: the retry is more than its delay away
  });
});
