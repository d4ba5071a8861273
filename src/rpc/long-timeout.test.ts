import { afterEach, describe, expect, it, vi } from 'vitest';
import { setTimeoutAt } from './long-timeout.js';

afterEach(() => vi.useRealTimers());

describe('setTimeoutAt', () => {
  it('waits out a delay beyond setTimeout\'s 2^31-1 ms limit instead of firing at once', () => {
    vi.useFakeTimers({ now: 0 });
    const fired = vi.fn();
    const at = 40 * 86_400_000; // 40 days
    setTimeoutAt(fired, at);
    vi.advanceTimersByTime(2 ** 31 - 1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(at - (2 ** 31 - 1) - 1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('fires a past or near instant promptly, and not at all once cancelled', () => {
    vi.useFakeTimers({ now: 1000 });
    const past = vi.fn();
    setTimeoutAt(past, 0);
    vi.advanceTimersByTime(0);
    expect(past).toHaveBeenCalledTimes(1);
    const cancelled = vi.fn();
    const cancel = setTimeoutAt(cancelled, 5000 + 40 * 86_400_000);
    vi.advanceTimersByTime(2 ** 31);
    cancel();
    vi.advanceTimersByTime(50 * 86_400_000);
    expect(cancelled).not.toHaveBeenCalled();
  });
});
