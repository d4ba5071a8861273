/**
 * EncryptStream with a hostile client (review by helper-121): thousands of 1-byte chunks under
 * 64 KiB of associated data, queued at once, each authenticating all of it again; and a grant
 * revoked while empty chunks keep arriving.
 */
import { create } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';
import { EncryptStreamRequestSchema } from '../../gen/ringfence/v1/stream_pb.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import { ApiError, ErrorReason, Status } from './errors.js';
import { MemoryBudget } from './memory-budget.js';
import { fakeStreamCall as fakeCall } from './stream-call.test-support.js';
import { encryptStreamHandler } from './stream-handlers.js';

const headerMessage = (aad: Buffer) => create(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k', associatedData: aad } } });
const chunkMessage = (plaintext: Buffer, final = false) => create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext, final } } });

describe('EncryptStream with many tiny chunks under large associated data', () => {
  it('lets other work run between them (about every 256 KiB of work), and still seals every chunk', { timeout: 30_000 }, async () => {
    const ctx = await standInContext({ budget: new MemoryBudget(1 << 30) } as never);
    let seals = 0;
    const inner = ctx.engine.aeadEncrypt.bind(ctx.engine);
    (ctx.engine as { aeadEncrypt: typeof inner }).aeadEncrypt = (...a: Parameters<typeof inner>) => (seals++, inner(...a));
    const deps = { audit: () => {}, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000 }, authorize: () => {} }) } };
    const s = fakeCall();
    encryptStreamHandler(ctx, deps as never)(s.call as never);
    const N = 400;
    s.call.push(headerMessage(Buffer.alloc(64 * 1024, 1)));
    for (let i = 0; i < N; i++) s.call.push(chunkMessage(Buffer.from([i & 255]), i === N - 1));
    s.call.push(null);
    const seen: number[] = [];
    const turn = () => {
      seen.push(seals);
      if (seals < N) setImmediate(turn);
    };
    setImmediate(turn);
    await vi.waitFor(() => expect(s.written).toHaveLength(N + 1), { timeout: 20_000 });
    expect(s.errors).toEqual([]);
    // 64 KiB + 4 KiB of work a chunk: a turn at least every 4 chunks (before: none until all were sealed).
    const steps = seen.slice(1).map((n, i) => n - seen[i]!);
    expect(seen.filter((n) => n > 0 && n < N).length).toBeGreaterThan(N / 8);
    expect(Math.max(...steps)).toBeLessThanOrEqual(8);
  });
});

describe('EncryptStream and a grant revoked by a policy reload', () => {
  it('ends the stream with PERMISSION_DENIED at the next message, an empty chunk too, not at the half-close', async () => {
    const ctx = await standInContext({ budget: new MemoryBudget(1 << 30) } as never);
    let revoked = false;
    const authorize = () => {
      if (revoked) throw new ApiError(Status.PERMISSION_DENIED, ErrorReason.PERMISSION_DENIED, 'caller may not encrypt with key "k"', { key_name: 'k' });
    };
    const deps = { audit: () => {}, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000 }, authorize }) } };
    const s = fakeCall();
    encryptStreamHandler(ctx, deps as never)(s.call as never);
    s.call.push(headerMessage(Buffer.alloc(0)));
    await vi.waitFor(() => expect(s.written).toHaveLength(1)); // the stream header
    revoked = true;
    s.call.push(chunkMessage(Buffer.alloc(0)));
    await vi.waitFor(() => expect(s.errors).toHaveLength(1)); // the client has not half-closed
    expect(s.errors[0]!.code).toBe(Status.PERMISSION_DENIED);
    expect(s.written).toHaveLength(1);
  });
});
