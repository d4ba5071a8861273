/**
 * An operation whose answer is far larger than its request (GenerateRandom of 16 MiB, which a
 * daemon may allow) goes as its unary call: packed on the stream, an answer over the client's
 * receive limit made grpc-js cancel the Session with every operation in flight on it (review by
 * helper-129), and 16 MiB was over the SDK's default receive limit even alone.
 */
import { describe, expect, it } from 'vitest';
import { RingfenceClient } from './client.js';
import { MIN_RECEIVE_MESSAGE_BYTES } from './transport.js';
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

describe('the client receive limit', () => {
  it('below 64 KiB is refused: the daemon packs answers up to 60 KiB, and one over the limit cancels a session whole (review by helper-133)', () => {
    expect(() => new RingfenceClient({ socketPath: env.fake.socketPath, grpcOptions: { 'grpc.max_receive_message_length': 48 * 1024 } })).toThrow(RangeError);
  });

  it('at 64 KiB, a GenerateRandom whose answer is over it fails alone; the operation beside it is answered', async () => {
    const client = new RingfenceClient({ socketPath: env.fake.socketPath, grpcOptions: { 'grpc.max_receive_message_length': MIN_RECEIVE_MESSAGE_BYTES } });
    env.fake.sessionDelayMs = 100;
    const s = client.session();
    try {
      const [o, fits, over] = await Promise.allSettled([s.hash('in flight alongside'), s.generateRandom(50_000), s.generateRandom(70_000)]);
      expect(o.status, o.status === 'rejected' ? String(o.reason) : '').toBe('fulfilled');
      expect(fits.status, fits.status === 'rejected' ? String(fits.reason) : '').toBe('fulfilled');
      expect(over.status).toBe('rejected');
    } finally {
      env.fake.sessionDelayMs = 3;
      await s.close().catch(() => undefined);
      client.close();
    }
  }, 20_000);
});
