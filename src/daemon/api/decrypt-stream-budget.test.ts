/**
 * DecryptStream against the buffer budget and the policy, with a hostile client (review by
 * helper-121): a chunk body declared 1 MiB and sent a byte at a time, on many streams; and a grant
 * revoked while pieces that complete no chunk keep arriving.
 */
import { create } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';
import { DecryptStreamRequestSchema } from '../../gen/ringfence/v1/stream_pb.js';
import { encodeStreamHeader, STREAM_HEADER_BYTES } from '../ciphertext/stream-format.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import { ApiError, ErrorReason, Status } from './errors.js';
import { EXEMPT_CALLS_PER_CALLER, MemoryBudget } from './memory-budget.js';
import { fakeStreamCall as fakeCall } from './stream-call.test-support.js';
import { decryptStreamHandler, encryptStreamHandler } from './stream-handlers.js';
import { EncryptStreamRequestSchema } from '../../gen/ringfence/v1/stream_pb.js';

const chunkMessage = (ciphertext: Buffer) => create(DecryptStreamRequestSchema, { frame: { case: 'chunk', value: { ciphertext } } });
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('DecryptStream chunk bodies and the buffer budget', () => {
  it('streams each beginning a 1 MiB body with one byte hold no more than the caller part plus the exempt calls', { timeout: 30_000 }, async () => {
    const PER_CALLER = 4 << 20;
    const budget = new MemoryBudget(8 << 20, PER_CALLER);
    const ctx = await standInContext({ budget } as never);
    const deps = { audit: () => {}, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000 }, authorize: () => {} }) } };
    const key = ctx.keys.get('k');
    const header = encodeStreamHeader({ suite: 'aes-256-gcm', keyId: Buffer.from(key.id, 'hex'), keyVersion: 1, streamId: Buffer.alloc(16, 7) });
    const sealed = ctx.limits.maxStreamChunkBytes + 16;
    const prefix = Buffer.alloc(17);
    prefix.writeUInt32BE(sealed, 1);
    const streams: ReturnType<typeof fakeCall>[] = [];
    for (let i = 0; i < 100; i++) {
      const s = fakeCall();
      decryptStreamHandler(ctx, deps as never)(s.call as never);
      s.call.push(create(DecryptStreamRequestSchema, { frame: { case: 'header', value: {} } }));
      s.call.push(chunkMessage(Buffer.concat([header, prefix, Buffer.alloc(1)])));
      streams.push(s);
      await tick(1);
    }
    await tick(100);
    for (const s of streams) s.call.push(chunkMessage(Buffer.alloc(sealed - 2))); // all but the body's last byte
    await tick(300);
    // A body's room (ciphertext + plaintext) is reserved as it begins. Before, 100 streams held
    // about 100 x 1 MiB: the rest of each body was taken beyond the bounds.
    const body = 2 * sealed;
    expect(budget.held).toBeLessThanOrEqual(PER_CALLER + (EXEMPT_CALLS_PER_CALLER + 1) * body);
    expect(budget.waiters).toBeGreaterThan(0); // the others wait for room, before holding any of their body
    expect(streams.flatMap((s) => s.errors)).toEqual([]);
    for (const s of streams) s.call.destroy();
  });

  it('a stream whose chunk prefix came in two messages holds nothing once it is whole: it starts its body while another caller holds the whole budget', { timeout: 30_000 }, async () => {
    const budget = new MemoryBudget(1 << 20);
    const ctx = await standInContext({ budget } as never);
    const deps = (uid: number) => ({ audit: () => {}, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid }, authorize: () => {} }) } });
    // A real two-chunk stream ciphertext, from EncryptStream.
    const enc = fakeCall();
    encryptStreamHandler(ctx, deps(1000) as never)(enc.call as never);
    enc.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k' } } }));
    enc.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: Buffer.alloc(1000, 1) } } }));
    enc.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: Buffer.alloc(1000, 2), final: true } } }));
    enc.call.push(null);
    await vi.waitFor(() => expect(enc.written).toHaveLength(3));
    const ciphertext = Buffer.concat((enc.written as { ciphertext: Uint8Array }[]).map((m) => m.ciphertext));
    // Another caller takes all the budget and keeps it.
    const hog = budget.share('666');
    hog.take(1 << 20);
    const s = fakeCall();
    decryptStreamHandler(ctx, deps(1000) as never)(s.call as never);
    s.call.push(create(DecryptStreamRequestSchema, { frame: { case: 'header', value: {} } }));
    const cut = STREAM_HEADER_BYTES + 5; // inside the first chunk prefix
    s.call.push(chunkMessage(ciphertext.subarray(0, cut)));
    s.call.push(chunkMessage(ciphertext.subarray(cut)));
    s.call.push(null);
    await vi.waitFor(() => expect(s.written).toHaveLength(2), { timeout: 5_000 });
    expect(s.errors).toEqual([]);
    hog.close();
  });
});

describe('DecryptStream and a grant revoked by a policy reload', () => {
  it('ends the stream with PERMISSION_DENIED at the next message, though it completes no chunk (not STREAM_TRUNCATED at the end)', async () => {
    const ctx = await standInContext({ budget: new MemoryBudget(1 << 30) } as never);
    let revoked = false;
    const authorize = () => {
      if (revoked) throw new ApiError(Status.PERMISSION_DENIED, ErrorReason.PERMISSION_DENIED, 'caller may not decrypt with key "k"', { key_name: 'k' });
    };
    const deps = { audit: () => {}, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000 }, authorize }) } };
    const key = ctx.keys.get('k');
    const header = encodeStreamHeader({ suite: 'aes-256-gcm', keyId: Buffer.from(key.id, 'hex'), keyVersion: 1, streamId: Buffer.alloc(16, 7) });
    const prefix = Buffer.alloc(17);
    prefix.writeUInt32BE(1000 + 16, 1);
    const s = fakeCall();
    decryptStreamHandler(ctx, deps as never)(s.call as never);
    s.call.push(create(DecryptStreamRequestSchema, { frame: { case: 'header', value: {} } }));
    s.call.push(chunkMessage(Buffer.concat([header, prefix, Buffer.alloc(10)])));
    await tick(20);
    expect(s.errors).toEqual([]);
    revoked = true;
    s.call.push(chunkMessage(Buffer.alloc(10))); // completes no chunk
    s.call.push(null);
    await vi.waitFor(() => expect(s.errors).toHaveLength(1));
    expect(s.errors[0]!.code).toBe(Status.PERMISSION_DENIED);
    expect(s.errors[0]!.details).toBe('caller may not decrypt with the key this ciphertext names');
    expect(s.written).toEqual([]);
  });
});
