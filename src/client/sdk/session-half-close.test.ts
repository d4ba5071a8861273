/**
 * A session half-closes a stream it no longer needs (idle, or drained of operations given up on) so
 * that the daemon ends it; a daemon that does not (stopped, stuck, faulty) must not keep it, and a
 * connection's stream on the daemon, open until the client is closed (found by review: helper-84).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isCancelled, isDeadlineExceeded } from './index.js';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rejection = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);
/** Waits up to withinMs for the fake to count n session streams open, and says how many it counts. */
const streamsOpenWithin = async (n: number, withinMs: number) => {
  for (const end = Date.now() + withinMs; env.fake.stats.sessionStreamsOpen !== n && Date.now() < end; ) await sleep(10);
  return env.fake.stats.sessionStreamsOpen;
};

beforeEach(() => {
  env.fake.sessionDelayMs = 3;
  env.fake.sessionIgnoresHalfClose = true;
});
afterEach(() => {
  env.fake.sessionIgnoresHalfClose = false;
  env.fake.sessionSwallows = undefined;
});

describe('a half-closed session stream the daemon never ends', () => {
  it('is cancelled after the idle timeout and CLOSE_WAIT_MS, with the session still open', async () => {
    const s = env.client.session({ idleTimeoutMs: 20 });
    const open = env.fake.stats.sessionStreamsOpen;
    await s.hash('one');
    expect(env.fake.stats.sessionStreamsOpen).toBe(open + 1);
    // Half-closed after 20 ms; cancelled 2 s later (CLOSE_WAIT_MS). Without the cancel it stays open.
    expect(await streamsOpenWithin(open, 6000)).toBe(open);
    // The session goes on, on a new stream.
    expect((await s.hash('two')).digest.length).toBe(32);
    await s.close();
    expect(await streamsOpenWithin(open, 6000)).toBe(open);
  }, 20_000);

  it('is cancelled when it drained: its late answers all came, while a fresh stream carries on', async () => {
    const s = env.client.session({ maxInFlight: 2, idleTimeoutMs: 60_000 });
    const open = env.fake.stats.sessionStreamsOpen;
    env.fake.sessionDelayMs = 300; // answers come at 150-300 ms, after the first one's deadline
    const late = rejection(s.hash('late', 'sha256', { timeoutMs: 30 }));
    const slow = s.hash('slow');
    await sleep(10);
    expect(isDeadlineExceeded(await late)).toBe(true);
    // Every slot is taken and one is given up on: the first stream drains and the fresh one carries this.
    env.fake.sessionDelayMs = 3;
    expect((await s.hash('queued')).digest.length).toBe(32);
    expect((await slow).digest.length).toBe(32);
    expect(env.fake.stats.sessionStreamsOpen).toBeGreaterThanOrEqual(open + 1);
    // The drained stream, with everything on it answered, was half-closed; the daemon ignores that.
    expect(await streamsOpenWithin(open + 1, 6000)).toBe(open + 1);
    await s.close();
    expect(await streamsOpenWithin(open, 6000)).toBe(open);
  }, 20_000);

  it('close() settles only once the half-closed streams are over', async () => {
    const s = env.client.session({ idleTimeoutMs: 20 });
    const open = env.fake.stats.sessionStreamsOpen;
    await s.hash('one');
    await sleep(100); // idle: half-closed
    await s.close();
    expect(await streamsOpenWithin(open, 1000)).toBe(open);
  }, 20_000);

  it("aborting the session's signal cancels it at once", async () => {
    const ac = new AbortController();
    const s = env.client.session({ idleTimeoutMs: 20, signal: ac.signal });
    const open = env.fake.stats.sessionStreamsOpen;
    await s.hash('one');
    await sleep(100); // idle: half-closed, and cancelled by itself only at about 2.1 s
    expect(env.fake.stats.sessionStreamsOpen).toBe(open + 1);
    ac.abort();
    // Well before the session's own CLOSE_WAIT_MS cancel; a cancel reaches the fake in milliseconds.
    expect(await streamsOpenWithin(open, 1000)).toBe(open);
    expect(isCancelled(await rejection(s.hash('after')))).toBe(true);
  }, 20_000);
});
