/**
 * Memory held by the answers of a DecryptStream message (review by helper-94): each plaintext was
 * a view of the kernel's output, associated data || plaintext, so a message of tiny chunks under
 * 64 KiB of associated data (EncryptStream with 1-byte pieces makes them) held ~65 KiB per byte of
 * plaintext, while the memory budget counted the bytes. The real CryptoEngine over a fake AF_ALG
 * (as engine.test.ts; the fake does not verify tags: it stands in for chunks that would verify).
 */
import { Duplex } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';

const kernel = vi.hoisted(() => ({ lastOut: undefined as Buffer | undefined }));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) =>
  (await import('../engine/fake-af-alg.test-support.js')).fakeAfAlg(await importOriginal<typeof import('../../../native-ffi/af-alg.js')>(), (out) => void (kernel.lastOut = out)),
);

const { CryptoEngine } = await import('../engine/engine.js');
const { DecryptStreamRequestSchema } = await import('../../gen/ringfence/v1/stream_pb.js');
const { encodeStreamHeader } = await import('../ciphertext/stream-format.js');
const { standInContext } = await import('../ops/stand-in.test-support.js');
const { MemoryBudget } = await import('./memory-budget.js');
const { decryptStreamHandler } = await import('./stream-handlers.js');

const GCM = { type: 'aead', name: 'gcm(aes)' } as const;

describe('DecryptStream memory', () => {
  it('the answers of one message keep no more memory alive than the budget counted', { timeout: 30_000 }, async () => {
    const budget = new MemoryBudget(1 << 30);
    const ctx = await standInContext({ engine: new CryptoEngine() as never, budget } as never);
    const key = ctx.keys.get('k');
    const header = encodeStreamHeader({ suite: 'aes-256-gcm', keyId: Buffer.from(key.id, 'hex'), keyVersion: 1, streamId: Buffer.alloc(16, 7) });
    const N = 500;
    const chunk = (final: boolean) => {
      const c = Buffer.alloc(17 + 17, 0x11);
      c[0] = final ? 1 : 0;
      c.writeUInt32BE(17, 1); // 1 byte of plaintext + 16-byte tag
      return c;
    };
    const body = Buffer.concat(Array.from({ length: N }, (_, i) => chunk(i === N - 1))); // 17 KB: one message

    const firstWrite: { budgetHeld?: number } = {};
    const plaintexts: Uint8Array[] = [];
    const call = Object.assign(
      new Duplex({
        objectMode: true,
        read() {},
        write(m: { plaintext: Uint8Array }, _e, cb) {
          if (plaintexts.length === 0) Object.assign(firstWrite, { budgetHeld: budget.held });
          plaintexts.push(m.plaintext);
          cb();
        },
      }),
      { getDeadline: () => Infinity },
    );
    const errors: unknown[] = [];
    const ended = new Promise<void>((resolve) => {
      call.on('error', (e) => (errors.push(e), resolve()));
      call.on('finish', () => resolve());
    });
    const deps = { audit: () => {}, log: { error: vi.fn() }, access: { forCall: () => ({ authorize: () => {} }) } };
    decryptStreamHandler(ctx, deps as never)(call as never);
    call.push(create(DecryptStreamRequestSchema, { frame: { case: 'header', value: { associatedData: Buffer.alloc(64 * 1024, 1) } } }));
    call.push(create(DecryptStreamRequestSchema, { frame: { case: 'chunk', value: { ciphertext: Buffer.concat([header, body]) } } }));
    call.push(null);
    await ended;
    expect(errors).toEqual([]);
    expect(plaintexts).toHaveLength(N);
    expect(plaintexts.every((p) => p.length === 1)).toBe(true);

    const pinned = [...new Set(plaintexts.map((p) => p.buffer))].reduce((n, b) => n + b.byteLength, 0);
    // Each 1-byte answer must not keep its 64 KiB associated-data lead alive (500 x 64 KiB): all of
    // them together keep no more than the budget counts for the message and its answers.
    expect(firstWrite.budgetHeld).toBeGreaterThan(0);
    expect(pinned).toBeLessThanOrEqual(4 * 2 * (header.length + body.length));
  });

  it('the engine hands back no view that keeps a larger associated-data lead alive, and wipes what it drops', async () => {
    const engine = new CryptoEngine();
    const aad = Buffer.alloc(64 * 1024, 1);
    const opened = await engine.aeadDecrypt(GCM as never, 1, 16, Buffer.alloc(12), aad, Buffer.alloc(17));
    expect(opened.length).toBe(1);
    expect(opened.buffer.byteLength).toBeLessThan(aad.length);
    expect(kernel.lastOut!.every((b) => b === 0)).toBe(true); // the dropped output held the plaintext too
    const sealed = await engine.aeadEncrypt(GCM as never, 1, 16, Buffer.alloc(12), aad, Buffer.alloc(1), 40);
    expect(sealed.length).toBe(40 + 1 + 16);
    expect(sealed.buffer.byteLength).toBeLessThan(aad.length);
    // A large plaintext under small associated data stays a view: no copy where nothing is wasted.
    const big = await engine.aeadDecrypt(GCM as never, 1, 16, Buffer.alloc(12), Buffer.alloc(40), Buffer.alloc(64 * 1024 + 16));
    expect(big.byteOffset).toBe(40);
    engine.close();
  });
});
