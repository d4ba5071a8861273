import { describe, expect, it } from 'vitest';
import { KeyRetries } from './key-retries.js';

describe('KeyRetries', () => {
  it('a key waits from its first failure on, doubling up to the cap; success starts it afresh', () => {
    const r = new KeyRetries({ firstMs: 1000, maxMs: 5000 });
    expect(r.retryTime('a', 'rotation', 0)).toBeNull();
    expect([r.failed('a', 'rotation', 0), r.failed('a', 'rotation', 1000), r.failed('a', 'rotation', 3000), r.failed('a', 'rotation', 7000)]).toEqual([1000, 2000, 4000, 5000]);
    expect(r.retryTime('a', 'rotation', 7000)).toBe(12_000);
    expect(r.retryTime('a', 'rotation', 11_999)).toBe(12_000);
    expect(r.retryTime('a', 'rotation', 12_000)).toBeNull(); // due again
    expect(r.retryTime('b', 'rotation', 7000)).toBeNull(); // per key
    r.succeeded('a');
    expect(r.retryTime('a', 'rotation', 7000)).toBeNull();
    expect(r.failed('a', 'rotation', 7000)).toBe(1000);
  });

  it('a retry is for the kind of work that failed: a deletion is not held up by a rotation\'s backoff (found by review)', () => {
    const r = new KeyRetries({ firstMs: 1000, maxMs: 300_000 });
    for (let t = 0, i = 0; i < 8; i++) t += r.failed('a', 'rotation', t);
    expect(r.retryTime('a', 'rotation', 200_000)).toBe(255_000); // the eighth failure, at 127 s, waits 128 s
    expect(r.retryTime('a', 'deletion', 200_000)).toBeNull();
    expect(r.failed('a', 'deletion', 200_000)).toBe(1000); // its own backoff, from the start
  });

  it('a wall clock that stepped back does not hold a key up by more than its delay', () => {
    const r = new KeyRetries({ firstMs: 1000, maxMs: 5000 });
    r.failed('a', 'deletion', 100_000);
    expect(r.retryTime('a', 'deletion', 100_500)).toBe(101_000);
    expect(r.retryTime('a', 'deletion', 99_999)).toBeNull(); // stepped back: the retry is more than its delay away
  });
});
