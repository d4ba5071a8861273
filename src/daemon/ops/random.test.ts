import { describe, expect, it } from 'vitest';
import type { OpContext } from './context.js';
import { generateRandom, RANDOM_ASYNC_THRESHOLD_BYTES } from './random.js';
import { create } from '@bufbuild/protobuf';
import { GenerateRandomRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { countLoopTurns } from '../../../test/support/loop-turns.js';

// The engine view only names the caller: large answers wait its turn at the libuv pool.
const ctx = { authorize: () => {}, limits: { maxPayloadBytes: 4 << 20 }, engine: { owner: 'uid:1001' } } as unknown as OpContext;
const ask = (lengthBytes: number) => generateRandom(ctx, create(GenerateRandomRequestSchema, { lengthBytes }));

describe('generateRandom', () => {
  // Found by review: 1024 concurrent 1 MiB calls held the event loop for 5 s (a synchronous
  // getrandom each), long enough for systemd's watchdog to kill the daemon.
  it('lets the event loop turn while it makes a large answer', async () => {
    const loop = countLoopTurns();
    const answers = await Promise.all([ask(4 << 20), ask(4 << 20)]);
    const turns = loop.stop();
    expect(turns).toBeGreaterThan(0);
    for (const { data } of answers) {
      expect(data!.length).toBe(4 << 20);
      expect(Buffer.from(data!).equals(Buffer.alloc(4 << 20))).toBe(false);
    }
    expect(Buffer.from(answers[0]!.data!).equals(Buffer.from(answers[1]!.data!))).toBe(false);
  });

  it('answers small requests synchronously, of the length asked', async () => {
    for (const n of [1, 32, RANDOM_ASYNC_THRESHOLD_BYTES, RANDOM_ASYNC_THRESHOLD_BYTES + 1]) expect((await ask(n)).data!.length).toBe(n);
  });

  it('refuses a length of 0 or over maxPayloadBytes', async () => {
    await expect(ask(0)).rejects.toMatchObject({ code: 3 });
    await expect(ask((4 << 20) + 1)).rejects.toMatchObject({ code: 8 });
  });
});
