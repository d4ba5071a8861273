/**
 * A key change acknowledged while the kernel seals or opens a stream's chunk holds for that chunk:
 * each chunk's key checks ran only before the kernel, so a final chunk sealed while the key was
 * disabled was still sent and the stream ended OK (review by helper-149). The node:crypto
 * stand-in engine is held between the chunk reaching it and its answer, while the change is made.
 */
import { create } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';
import { DecryptStreamRequestSchema, EncryptStreamRequestSchema, type DecryptStreamResponse, type EncryptStreamResponse } from '../../gen/ringfence/v1/stream_pb.js';
import type { OpContext } from '../ops/context.js';
import { deleteKeyNow, standInContext } from '../ops/stand-in.test-support.js';
import type { AuditEntry } from './audit.js';
import { MemoryBudget } from './memory-budget.js';
import { fakeStreamCall } from './stream-call.test-support.js';
import { decryptStreamHandler, encryptStreamHandler } from './stream-handlers.js';
import { callerEngine } from '../engine/caller-engine.test-support.js';

type EngineFn = (...a: unknown[]) => Promise<Buffer>;

/** The context with `method` of its engine held once `arm()` was called: `reached` when a request is in it. */
function holdable(ctx: OpContext, method: 'aeadEncrypt' | 'aeadDecrypt') {
  const real = ctx.engine as unknown as Record<string, EngineFn>;
  let armed = false;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let reach!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  const outputs: Buffer[] = [];
  const engine = callerEngine({
    ...real,
    [method]: async (...a: unknown[]) => {
      if (armed) {
        reach();
        await released;
      }
      const out = await real[method]!(...a);
      if (armed) outputs.push(out);
      return out;
    },
  });
  return { ctx: { ...ctx, engine } as unknown as OpContext, arm: () => (armed = true), reached, release, outputs };
}

function run(handler: typeof encryptStreamHandler | typeof decryptStreamHandler, ctx: OpContext) {
  const f = fakeStreamCall();
  const audit: AuditEntry[] = [];
  const ended = new Promise<void>((resolve) => {
    f.call.on('error', () => resolve());
    f.call.on('finish', () => resolve());
  });
  const log = { error: vi.fn() };
  const deps = { audit: (e: AuditEntry) => audit.push(e), log, access: { forCall: () => ({ authorize: () => {} }) } };
  handler(ctx, deps as never)(f.call as never);
  return { ...f, audit, ended, log };
}

const context = () => standInContext({ budget: new MemoryBudget(1 << 30) } as Partial<OpContext>);

const changes: [string, (ctx: OpContext) => Promise<unknown>, string][] = [
  ['DisableKey', (ctx) => ctx.keys.setEnabled('k', false), 'KEY_DISABLED'],
  ['RotateKey + UpdateKey(min_decryption_version 2)', async (ctx) => {
    await ctx.keys.rotate('k');
    await ctx.keys.update('k', { minDecryptionVersion: 2 });
  }, 'KEY_VERSION_DISABLED'],
];

describe('EncryptStream: a key change while the kernel seals the final chunk', () => {
  for (const [what, change, reason] of changes) {
    it(`${what}: the chunk is not sent, the stream ends FAILED_PRECONDITION ${reason}`, async () => {
      const base = await context();
      const h = holdable(base, 'aeadEncrypt');
      const s = run(encryptStreamHandler, h.ctx);
      s.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k' } } }));
      await vi.waitFor(() => expect(s.written).toHaveLength(1));
      h.arm();
      s.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: Buffer.from('last'), final: true } } }));
      s.call.push(null);
      await h.reached;
      await change(base);
      h.release();
      await s.ended;
      expect(s.written).toHaveLength(1); // the header only
      expect(s.errors.map((e) => e.code)).toEqual([9]);
      await vi.waitFor(() => expect(s.audit).toHaveLength(1));
      expect(s.audit[0]).toMatchObject({ outcome: 'FAILED_PRECONDITION', reason });
    });
  }
});

describe('DecryptStream: a key change while the kernel opens a chunk', () => {
  for (const [what, change, reason] of changes) {
    it(`${what}: no plaintext is sent (and what the kernel opened is wiped), FAILED_PRECONDITION ${reason}`, async () => {
      const base = await context();
      const e = run(encryptStreamHandler, base);
      e.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k' } } }));
      e.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: Buffer.from('the plaintext'), final: true } } }));
      e.call.push(null);
      await e.ended;
      expect(e.errors).toEqual([]);
      const stream = Buffer.concat((e.written as EncryptStreamResponse[]).map((m) => Buffer.from(m.ciphertext)));

      const h = holdable(base, 'aeadDecrypt');
      h.arm();
      const d = run(decryptStreamHandler, h.ctx);
      d.call.push(create(DecryptStreamRequestSchema, { frame: { case: 'header', value: {} } }));
      d.call.push(create(DecryptStreamRequestSchema, { frame: { case: 'chunk', value: { ciphertext: stream } } }));
      d.call.push(null);
      await h.reached;
      await change(base);
      h.release();
      await d.ended;
      expect((d.written as DecryptStreamResponse[]).filter((m) => m.plaintext.length > 0)).toEqual([]);
      expect(d.errors.map((x) => x.code)).toEqual([9]);
      expect(h.outputs[0]!.equals(Buffer.alloc('the plaintext'.length))).toBe(true);
      await vi.waitFor(() => expect(d.audit).toHaveLength(1));
      expect(d.audit[0]).toMatchObject({ outcome: 'FAILED_PRECONDITION', reason });
    });
  }
});

// The kernel key is gone with the key, so the kernel refuses the chunk: that ended the stream
// INTERNAL / KERNEL_ERROR; it ends as a chunk sent a moment later would (review by helper-197).
describe('a stream whose key is deleted (its waiting period over) while the kernel works on a chunk', () => {
  it('EncryptStream: the chunk is not sent, the stream ends NOT_FOUND / KEY_NOT_FOUND, no internal error logged', async () => {
    const base = await context();
    const h = holdable(base, 'aeadEncrypt');
    const s = run(encryptStreamHandler, h.ctx);
    s.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k' } } }));
    await vi.waitFor(() => expect(s.written).toHaveLength(1));
    h.arm();
    s.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: Buffer.from('last'), final: true } } }));
    s.call.push(null);
    await h.reached;
    await deleteKeyNow(base, 'k');
    h.release();
    await s.ended;
    expect(s.written).toHaveLength(1); // the header only
    expect(s.errors.map((e) => [e.code, e.details])).toEqual([[5, 'key "k" does not exist']]);
    await vi.waitFor(() => expect(s.audit).toHaveLength(1));
    expect(s.audit[0]).toMatchObject({ outcome: 'NOT_FOUND', reason: 'KEY_NOT_FOUND' });
    expect(s.log.error).not.toHaveBeenCalled();
  });

  it('DecryptStream: no plaintext is sent, the stream ends NOT_FOUND / KEY_NOT_FOUND, no internal error logged', async () => {
    const base = await context();
    const e = run(encryptStreamHandler, base);
    e.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k' } } }));
    e.call.push(create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: Buffer.from('the plaintext'), final: true } } }));
    e.call.push(null);
    await e.ended;
    const stream = Buffer.concat((e.written as EncryptStreamResponse[]).map((m) => Buffer.from(m.ciphertext)));
    const h = holdable(base, 'aeadDecrypt');
    h.arm();
    const d = run(decryptStreamHandler, h.ctx);
    d.call.push(create(DecryptStreamRequestSchema, { frame: { case: 'header', value: {} } }));
    d.call.push(create(DecryptStreamRequestSchema, { frame: { case: 'chunk', value: { ciphertext: stream } } }));
    d.call.push(null);
    await h.reached;
    await deleteKeyNow(base, 'k');
    h.release();
    await d.ended;
    expect((d.written as DecryptStreamResponse[]).filter((m) => m.plaintext.length > 0)).toEqual([]);
    expect(d.errors.map((x) => x.code)).toEqual([5]);
    await vi.waitFor(() => expect(d.audit).toHaveLength(1));
    expect(d.audit[0]).toMatchObject({ outcome: 'NOT_FOUND', reason: 'KEY_NOT_FOUND' });
    expect(d.log.error).not.toHaveBeenCalled();
  });
});
