/**
 * The server's stop (drain.ts drainServer): calls still open at the end of the drain period are
 * answered first (their handlers listen with onCutOff), and the connections are closed after the
 * grace period whatever the clients do: the stop never waits on a client.
 */
import { afterEach, expect, test, vi } from 'vitest';
import { CUT_OFF_GRACE_MS, Drain, DRAIN_MS, drainServer } from './drain.js';

afterEach(() => void vi.useRealTimers());

test('answers the calls still open when the drain period ends, then closes the connections after the grace period even if they stay open', async () => {
  vi.useFakeTimers();
  const events: string[] = [];
  const server = { tryShutdown: vi.fn(), forceShutdown: vi.fn(() => void events.push('forceShutdown')) };
  const drain = new Drain();
  drain.onStart(() => events.push('drain started'));
  drain.onCutOff(() => events.push('call answered'));
  const unregistered = vi.fn();
  drain.onCutOff(unregistered)(); // a call that answered by itself meanwhile
  let stopped = false;
  void drainServer(server, drain, { onCutOff: () => events.push('warned') }).then(() => (stopped = true));
  expect(events).toEqual(['drain started']);
  expect(server.tryShutdown).toHaveBeenCalledOnce();
  await vi.advanceTimersByTimeAsync(DRAIN_MS - 1);
  expect(events).toEqual(['drain started']);
  await vi.advanceTimersByTimeAsync(1);
  expect(events).toEqual(['drain started', 'warned', 'call answered']);
  // A call opened from now on is answered at once.
  drain.onCutOff(() => events.push('late call answered'));
  await vi.advanceTimersByTimeAsync(CUT_OFF_GRACE_MS);
  expect(events).toEqual(['drain started', 'warned', 'call answered', 'late call answered', 'forceShutdown']);
  expect(stopped).toBe(true);
  expect(unregistered).not.toHaveBeenCalled();
});

test('ends without a cut-off when every call ends within the drain period', async () => {
  vi.useFakeTimers();
  let closed: (() => void) | undefined;
  const server = { tryShutdown: vi.fn((cb: () => void) => void (closed = cb)), forceShutdown: vi.fn() };
  const drain = new Drain();
  const cut = vi.fn();
  drain.onCutOff(cut);
  const stop = drainServer(server, drain, { drainMs: 500 });
  closed!();
  await stop;
  await vi.advanceTimersByTimeAsync(10_000);
  expect(cut).not.toHaveBeenCalled();
  expect(server.forceShutdown).not.toHaveBeenCalled();
});
