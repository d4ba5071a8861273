/**
 * An operation whose answer is far larger than its request (GenerateRandom of 16 MiB, which a
 * daemon may allow) goes as its unary call: packed on the stream, an answer over the client's
 * receive limit made grpc-js cancel the Session with every operation in flight on it (review by
 * helper-129), and 16 MiB was over the SDK's default receive limit even alone.
 */
import { describe, expect, it } from 'vitest';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();

describe('a session operation whose answer is large', () => {
  it('is answered, and the operations in flight beside it on the stream get their answers', async () => {
    env.fake.sessionDelayMs = 100;
    const s = env.client.session();
    try {
      const other = s.hash('in flight alongside');
      const big = s.generateRandom(16 * 1024 * 1024);
      const [o, b] = await Promise.allSettled([other, big]);
      expect(o.status, o.status === 'rejected' ? String(o.reason) : '').toBe('fulfilled');
      expect(b.status, b.status === 'rejected' ? String(b.reason) : '').toBe('fulfilled');
      expect((b as PromiseFulfilledResult<{ data: Uint8Array }>).value.data.length).toBe(16 * 1024 * 1024);
    } finally {
      env.fake.sessionDelayMs = 3;
      await s.close().catch(() => undefined);
    }
  }, 20_000);
});
