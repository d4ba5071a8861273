/**
 * EncryptStream's key checks, on a fake grpc-js call over a real KeyManager and a node:crypto
 * stand-in for the kernel (the kernel's own behaviour is tested in the guests: streams.kernel).
 */
import { Duplex } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';
import { EncryptStreamRequestSchema, type EncryptStreamResponse } from '../../gen/ringfence/v1/stream_pb.js';
import { StreamDecryptor } from '../ciphertext/stream-format.js';
import { open } from '../engine/suite-ops.js';
import type { OpContext } from '../ops/context.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import type { AuditEntry } from './audit.js';
import { MemoryBudget } from './memory-budget.js';
import { encryptStreamHandler } from './stream-handlers.js';

function startEncryptStream(ctx: OpContext) {
  const written: EncryptStreamResponse[] = [];
  const errors: { code?: number; details?: string; metadata?: { get(k: string): unknown[] } }[] = [];
  const audit: AuditEntry[] = [];
  const call = Object.assign(
    new Duplex({
      objectMode: true,
      read() {},
      write(m: EncryptStreamResponse, _e, cb) {
        written.push(m);
        cb();
      },
    }),
    { getDeadline: () => Infinity },
  );
  const ended = new Promise<void>((resolve) => {
    call.on('error', (e) => {
      errors.push(e as never);
      resolve();
    });
    call.on('finish', () => resolve());
  });
  const deps = { audit: (e: AuditEntry) => audit.push(e), log: { error: vi.fn() }, access: { forCall: () => ({ authorize: () => {} }) } };
  encryptStreamHandler(ctx, deps as never)(call as never);
  const send = (init: object) => call.push(create(EncryptStreamRequestSchema, init as never));
  const headerSent = () => vi.waitFor(() => expect(written).toHaveLength(1));
  return { call, written, errors, audit, send, ended, headerSent };
}

const context = () => standInContext({ budget: new MemoryBudget(1 << 30) } as Partial<OpContext>);

async function decryptAll(ctx: OpContext, stream: Buffer): Promise<Buffer> {
  const d = new StreamDecryptor({
    callerAad: Buffer.alloc(0),
    maxChunkBytes: 1 << 20,
    onHeader: (h) => void ctx.keys.forDecrypt(h.keyId, h.keyVersion, h.suite),
    open: (h, nonce, aad, sealed) => {
      const r = ctx.keys.forDecrypt(h.keyId, h.keyVersion, h.suite);
      return open(ctx.engine, r.suite, r.serials, nonce, aad, sealed);
    },
  });
  const out = await d.push(stream);
  d.end();
  return Buffer.concat(out.map((c) => c.plaintext));
}

describe('EncryptStream: the first chunk', () => {
  it('is sealed and decrypts, counted once (the stream counted it when it began)', async () => {
    const ctx = await context();
    const s = startEncryptStream(ctx);
    s.send({ frame: { case: 'header', value: { keyName: 'k' } } });
    await s.headerSent();
    s.send({ frame: { case: 'chunk', value: { plaintext: Buffer.from('first'), final: true } } });
    s.call.push(null);
    await s.ended;
    expect(s.errors).toEqual([]);
    expect(s.written.map((m) => m.final)).toEqual([false, true]);
    expect((await decryptAll(ctx, Buffer.concat(s.written.map((m) => Buffer.from(m.ciphertext))))).toString()).toBe('first');
    expect(ctx.keys.encryptionCount(ctx.keys.get('k'), 1)).toBe(1);
  });

  // Found by review: the chunk counted in advance skipped the checks every later chunk makes.
  const changes: [string, (ctx: OpContext) => Promise<unknown>, string][] = [
    ['the key disabled', (ctx) => ctx.keys.setEnabled('k', false), 'KEY_DISABLED'],
    ['the key scheduled for deletion', (ctx) => ctx.keys.scheduleDeletion('k', 86_400_000), 'KEY_PENDING_DELETION'],
    ['min_decryption_version raised past the stream', async (ctx) => {
      await ctx.keys.rotate('k');
      await ctx.keys.update('k', { minDecryptionVersion: 2 });
    }, 'KEY_VERSION_DISABLED'],
  ];
  for (const [what, change, reason] of changes) {
    it(`is refused with ${reason} after ${what} between the header and it`, async () => {
      const ctx = await context();
      const s = startEncryptStream(ctx);
      s.send({ frame: { case: 'header', value: { keyName: 'k' } } });
      await s.headerSent();
      await change(ctx);
      s.send({ frame: { case: 'chunk', value: { plaintext: Buffer.from('late'), final: true } } });
      s.call.push(null);
      await s.ended;
      expect(s.written).toHaveLength(1); // the header only: no chunk was sealed
      expect(s.errors).toHaveLength(1);
      expect(s.errors[0]!.code).toBe(9); // FAILED_PRECONDITION
      await vi.waitFor(() => expect(s.audit).toHaveLength(1));
      expect(s.audit[0]).toMatchObject({ rpc: 'CryptoService/EncryptStream', outcome: 'FAILED_PRECONDITION', reason });
    });
  }
});
