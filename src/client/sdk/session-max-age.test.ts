/**
 * A busy session across the daemon's connectionMaxAge. grpc-js sends GOAWAY at max age and cuts
 * the calls still open on that connection after the grace period. A Session that never goes idle
 * kept its stream there, so the operations in flight at that moment failed UNAVAILABLE (found by
 * review, helper-110). The session now moves new operations to a fresh stream (a new connection)
 * when its connection goes away, and half-closes the old one, which the daemon ends once answered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingfenceClient, type RingfenceError } from './index.js';
import { startFakeServer, type FakeServer } from './test-server.js';

let fake: FakeServer;
let client: RingfenceClient;

beforeAll(async () => {
  // Max age 300 ms (grpc-js adds up to ±10 % jitter), then 400 ms for calls still open.
  fake = await startFakeServer(undefined, { 'grpc.max_connection_age_ms': 300, 'grpc.max_connection_age_grace_ms': 400 });
  fake.sessionDelayMs = 20;
  client = new RingfenceClient({ socketPath: fake.socketPath });
});
afterAll(async () => {
  await client.close();
  await fake.close();
});

describe('a session that never goes idle, on a daemon with connectionMaxAge', () => {
  it('loses no operation when its connection ages out: later ones go on a fresh stream', async () => {
    const session = client.session({ idleTimeoutMs: 60_000 });
    const streamsBefore = fake.stats.sessionStreams;
    const failures: string[] = [];
    let answered = 0;
    const until = Date.now() + 2500; // several max ages and grace periods
    // Eight callers, each with one operation outstanding at all times: the stream is never idle.
    const worker = async (w: number) => {
      for (let i = 0; Date.now() < until; i++) {
        const data = `worker ${w} op ${i}`;
        try {
          const { digest } = await session.hash(data);
          expect(digest).toHaveLength(32);
          answered++;
        } catch (err) {
          failures.push(`${(err as RingfenceError).code} ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    expect(failures).toEqual([]);
    expect(answered).toBeGreaterThan(100);
    // The connection aged out several times, and each time the work moved to a fresh stream.
    expect(fake.stats.sessionStreams - streamsBefore).toBeGreaterThanOrEqual(3);
    await session.close();
    await expect.poll(() => fake.stats.sessionStreamsOpen).toBe(0);
  });
});
