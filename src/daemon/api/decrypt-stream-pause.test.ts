/**
 * A DecryptStream message of many small chunks (review by helper-94): each chunk is authenticated
 * under the caller's associated data again, and the engine runs small requests synchronously, so
 * one message opened every chunk back to back without the event loop turning (no other call was
 * served meanwhile) and went on after its caller cancelled. The real CryptoEngine over a fake
 * AF_ALG that counts requests (as decrypt-stream-memory.test.ts; it does not verify tags).
 */
import { Duplex } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';

const kernel = vi.hoisted(() => ({ reads: 0 }));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) =>
  (await import('../engine/fake-af-alg.test-support.js')).fakeAfAlg(await importOriginal<typeof import('../../../native-ffi/af-alg.js')>(), () => void kernel.reads++),
);

const { CryptoEngine } = await import('../engine/engine.js');
const { DecryptStreamRequestSchema } = await import('../../gen/ringfence/v1/stream_pb.js');
const { encodeStreamHeader } = await import('../ciphertext/stream-format.js');
const { standInContext } = await import('../ops/stand-in.test-support.js');
const { MemoryBudget } = await import('./memory-budget.js');
const { decryptStreamHandler } = await import('./stream-handlers.js');

const N = 2000;

/** Starts a DecryptStream of one message holding N one-byte chunks under 1 KiB of associated data (synchronous requests). */
async function startStream() {
  kernel.reads = 0;
  const ctx = await standInContext({ engine: new CryptoEngine() as never, budget: new MemoryBudget(1 << 30) } as never);
  const key = ctx.keys.get('k');
  const header = encodeStreamHeader({ suite: 'aes-256-gcm', keyId: Buffer.from(key.id, 'hex'), keyVersion: 1, streamId: Buffer.alloc(16, 7) });
  const chunk = (final: boolean) => {
    const c = Buffer.alloc(17 + 17, 0x11);
    c[0] = final ? 1 : 0;
    c.writeUInt32BE(17, 1); // 1 byte of plaintext + 16-byte tag
    return c;
  };
  const body = Buffer.concat(Array.from({ length: N }, (_, i) => chunk(i === N - 1)));
  let answers = 0;
  const call = Object.assign(
    new Duplex({
      objectMode: true,
      read() {},
      write(_m, _e, cb) {
        answers++;
        cb();
      },
    }),
    { getDeadline: () => Infinity },
  );
  const errors: unknown[] = [];
  const audits: { outcome?: string }[] = [];
  const over = new Promise<void>((resolve) => {
    call.on('error', (e) => errors.push(e));
    call.on('close', () => resolve());
  });
  const deps = { audit: (a: { outcome?: string }) => audits.push(a), log: { error: vi.fn() }, access: { forCall: () => ({ authorize: () => {} }) } };
  decryptStreamHandler(ctx, deps as never)(call as never);
  call.push(create(DecryptStreamRequestSchema, { frame: { case: 'header', value: { associatedData: Buffer.alloc(1024, 1) } } }));
  call.push(create(DecryptStreamRequestSchema, { frame: { case: 'chunk', value: { ciphertext: Buffer.concat([header, body]) } } }));
  call.push(null);
  return { call, over, errors, audits, answers: () => answers };
}

describe('DecryptStream: a message of many chunks', () => {
  it('lets other work run while its chunks are opened, and still answers every chunk', { timeout: 30_000 }, async () => {
    const s = await startStream();
    const seen: number[] = [];
    const tick = () => {
      seen.push(kernel.reads);
      if (kernel.reads < N) setImmediate(tick);
    };
    setImmediate(tick);
    await Promise.race([s.over, new Promise((r) => s.call.on('finish', r))]);
    expect(s.errors).toEqual([]);
    expect(s.answers()).toBe(N);
    // The event loop turned many times while the N chunks were opened (before: once, after all of them).
    expect(seen.filter((n) => n > 0 && n < N).length).toBeGreaterThan(10);
    // Between two turns no more than ~64 chunks (256 KiB of work at 1 KiB + 4 KiB a chunk: about 51).
    const steps = seen.slice(1).map((n, i) => n - seen[i]!);
    expect(Math.max(...steps)).toBeLessThanOrEqual(64);
  });

  it('stops opening chunks once its caller cancelled', { timeout: 30_000 }, async () => {
    const s = await startStream();
    let atCancel = -1;
    const waitForWork = () => {
      if (kernel.reads < 200) return void setImmediate(waitForWork);
      atCancel = kernel.reads;
      s.call.emit('cancelled');
    };
    setImmediate(waitForWork);
    await s.over;
    await new Promise((r) => setTimeout(r, 50)); // anything still running would open more meanwhile
    expect(atCancel).toBeGreaterThanOrEqual(200);
    expect(kernel.reads).toBeLessThanOrEqual(atCancel + 64);
    // Each chunk is answered as it is opened; none once the caller is gone.
    expect(s.answers()).toBeLessThanOrEqual(atCancel);
    expect(s.audits.map((a) => a.outcome)).toEqual(['CANCELLED']);
  });
});
