/**
 * A deadline further away than the daemon can read (over 24.8 days: grpc-js servers parse the
 * timeout into a 32-bit integer of ms) is not sent; the SDK keeps it by cancelling the call itself
 * and answers DEADLINE_EXCEEDED (review by helper-103). setTimeoutAt is made to fire after 200 ms
 * here, standing in for the weeks such a deadline takes.
 */
import { describe, expect, it, vi } from 'vitest';

vi.mock('../../rpc/long-timeout.js', () => ({
  setTimeoutAt: (fn: () => void) => {
    const t = setTimeout(fn, 200);
    return () => clearTimeout(t);
  },
}));

const { isDeadlineExceeded } = await import('./index.js');
const { useFakeServer } = await import('./test-server.js');

const env = useFakeServer();
const DAY = 86_400_000;

describe('a deadline the daemon cannot be sent', () => {
  it('a unary call fails with DEADLINE_EXCEEDED when the SDK-kept deadline passes, not at once and not never', { timeout: 10_000 }, async () => {
    const t0 = Date.now();
    const err = await env.client.encrypt('slow', 'x', { timeoutMs: 30 * DAY }).catch((e: unknown) => e);
    expect(isDeadlineExceeded(err)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(Date.now() - t0).toBeLessThan(4000); // the slow key answers after 5 s
  });

  it('a stream fails with DEADLINE_EXCEEDED the same way', { timeout: 10_000 }, async () => {
    const enc = env.client.encryptStream('k', { timeoutMs: 30 * DAY });
    enc.resume();
    const err = await new Promise((resolve) => enc.on('error', resolve));
    expect(isDeadlineExceeded(err)).toBe(true);
  });
});
