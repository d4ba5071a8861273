/**
 * Batch replies and maxMessageBytes, on the host with a stand-in engine (the sizes are what is
 * tested; the kernel's sealing is tested in the guests). Independent truth: the reply's encoded
 * size, measured with toBinary.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';
import { BatchDecryptRequestSchema, BatchDecryptResponseSchema, BatchEncryptRequestSchema, BatchEncryptResponseSchema } from '../../gen/ringfence/v1/batch_pb.js';
import { aeadSuite } from '../../capabilities/suites.js';
import { DEFAULT_LIMITS } from '../config.js';
import { ApiError, ErrorReason } from '../api/errors.js';
import { permissionDenied } from '../policy/access.js';
import { batchDecrypt, batchEncrypt } from './batch.js';
import { sealEnvelope } from './envelope-ops.js';

const M = DEFAULT_LIMITS.maxMessageBytes;
const suite = aeadSuite('aes-256-gcm')!;
const record = { id: '00112233445566778899aabbccddeeff', name: 'k', suite: suite.name };

function context() {
  const engine = {
    aeadEncrypt: vi.fn(async (_a: unknown, _s: number, tag: number, _iv: Buffer, _aad: Buffer, pt: Buffer, headroom = 0) => Buffer.alloc(headroom + pt.length + tag)),
    aeadDecrypt: vi.fn(async (_a: unknown, _s: number, tag: number, _iv: Buffer, _aad: Buffer, sealed: Buffer) => Buffer.alloc(sealed.length - tag)),
  };
  const ctx = {
    engine,
    limits: { ...DEFAULT_LIMITS },
    keys: {
      forEncrypt: async () => ({ key: record, version: 1, suite, serials: [7] }),
      nameOfId: () => 'k',
      forDecrypt: () => ({ key: record, version: 1, suite, serials: [7] }),
      checkStreamVersion: () => record, // the key stays usable
    },
    // Only key "k" is allowed: every other item is denied, with a message and metadata naming it.
    authorize: (op: 'encrypt' | 'decrypt', key?: string) => {
      if (key !== 'k') throw permissionDenied({ uid: 1000, gid: 1000, pid: 1, groups: [] }, op, key);
    },
  };
  return { ctx: ctx as never, engine };
}

const reason = (e: unknown) => (e instanceof ApiError ? ErrorReason[e.reason] : String(e));

describe('batch replies never exceed maxMessageBytes', () => {
  it('a BatchEncrypt whose ciphertexts alone would not fit is refused before any item runs', async () => {
    const { ctx, engine } = context();
    // Four 1 MiB items and many small ones: the request fits, the ciphertexts (+52 bytes each) not.
    const requests = [...Array.from({ length: 4 }, () => ({ keyName: 'k', plaintext: new Uint8Array(DEFAULT_LIMITS.maxPayloadBytes) })), ...Array.from({ length: 996 }, () => ({ keyName: 'k', plaintext: new Uint8Array(50) }))];
    const req = create(BatchEncryptRequestSchema, { requests });
    expect(toBinary(BatchEncryptRequestSchema, req).length).toBeLessThanOrEqual(M);
    const err = await batchEncrypt(ctx, req).catch((e: unknown) => e);
    expect(reason(err)).toBe('BATCH_TOO_LARGE');
    expect((err as Error).message).toMatch(/would be at least \d+ bytes, more than the largest reply \(4259840 bytes\) — split it; no item was run/);
    expect(engine.aeadEncrypt).not.toHaveBeenCalled();
  });

  it('a BatchEncrypt whose denials would overflow the reply answers BATCH_TOO_LARGE, not an oversized reply', async () => {
    const { ctx } = context();
    // Found by review: 200 denied items with the longest names (64 bytes, named twice per denial)
    // and successful items filling the rest, so that the bound if every item succeeds fits.
    const longName = 'd'.repeat(64);
    const requests: { keyName: string; plaintext: Uint8Array }[] = [];
    for (let left = M - 200 * 175; left > 1000; left -= Math.min(DEFAULT_LIMITS.maxPayloadBytes, left - 1000) + 100) requests.push({ keyName: 'k', plaintext: new Uint8Array(Math.min(DEFAULT_LIMITS.maxPayloadBytes, left - 1000)) });
    for (let i = 0; i < 200; i++) requests.push({ keyName: longName, plaintext: new Uint8Array(0) });
    const req = create(BatchEncryptRequestSchema, { requests });
    expect(toBinary(BatchEncryptRequestSchema, req).length).toBeLessThanOrEqual(M);
    const err = await batchEncrypt(ctx, req).catch((e: unknown) => e);
    expect(reason(err)).toBe('BATCH_TOO_LARGE');
    expect((err as Error).message).toMatch(/with their errors, are \d+ bytes, more than the largest reply .* its items ran/);
  }, 60_000);

  it('a BatchDecrypt whose plaintexts fit is run, though its ciphertexts would not (found by review: the bound counted each plaintext as long as its ciphertext)', async () => {
    const { ctx } = context();
    const one = await sealEnvelope(ctx, { key: record, version: 1, suite, serials: [7] } as never, Buffer.alloc(4200 - 52), Buffer.alloc(0));
    expect(one.length).toBe(4200);
    const req = create(BatchDecryptRequestSchema, { requests: Array.from({ length: 1000 }, () => ({ ciphertext: one })) });
    expect(toBinary(BatchDecryptRequestSchema, req).length).toBeLessThanOrEqual(M);
    const res = await batchDecrypt(ctx, req);
    expect(res.results!.every((r) => r.result!.case === 'response')).toBe(true);
    expect(toBinary(BatchDecryptResponseSchema, create(BatchDecryptResponseSchema, res)).length).toBeLessThanOrEqual(M);
  }, 60_000);

  it('an item that cannot succeed fails alone: it does not count as a success that would refuse the batch (found by review)', async () => {
    const { ctx } = context();
    const good = await sealEnvelope(ctx, { key: record, version: 1, suite, serials: [7] } as never, Buffer.from('fine'), Buffer.alloc(0));
    const junk = new Uint8Array(M - good.length - 50); // larger than any ciphertext the daemon takes
    const req = create(BatchDecryptRequestSchema, { requests: [{ ciphertext: good }, { ciphertext: junk }] });
    expect(toBinary(BatchDecryptRequestSchema, req).length).toBeLessThanOrEqual(M);
    const res = await batchDecrypt(ctx, req);
    expect(res.results!.map((r) => r.result!.case)).toEqual(['response', 'error']);
    expect(ErrorReason[(res.results![1]!.result!.value as { reason: ErrorReason }).reason]).toBe('PAYLOAD_TOO_LARGE');
  }, 60_000);

  it('a BatchEncrypt item whose associated data is over its limit fails alone, not counted as a success (review by helper-98)', async () => {
    const { ctx: c } = context();
    const ctx = c as { limits: { maxAssociatedDataBytes: number; maxPayloadBytes: number } };
    ctx.limits.maxAssociatedDataBytes = 1024; // within its range (1 B - 1 MiB)
    const P = ctx.limits.maxPayloadBytes;
    const requests: { keyName: string; plaintext: Uint8Array; associatedData?: Uint8Array }[] = [{ keyName: 'k', plaintext: new Uint8Array(P), associatedData: new Uint8Array(1025) }];
    for (let i = 0; i < 3; i++) requests.push({ keyName: 'k', plaintext: new Uint8Array(P - 30_000) });
    const small = DEFAULT_LIMITS.maxBatchItems - requests.length;
    const per = Math.floor((M - toBinary(BatchEncryptRequestSchema, create(BatchEncryptRequestSchema, { requests })).length) / small) - 10;
    for (let i = 0; i < small; i++) requests.push({ keyName: 'k', plaintext: new Uint8Array(per) });
    const req = create(BatchEncryptRequestSchema, { requests });
    expect(toBinary(BatchEncryptRequestSchema, req).length).toBeLessThanOrEqual(M);
    // Counted as a success, the first item's 1 MiB would put the reply's least size over M.
    const res = await batchEncrypt(c, req);
    expect(res.results).toHaveLength(requests.length);
    const first = res.results![0]!.result!;
    expect(first.case).toBe('error');
    expect(ErrorReason[(first.value as { reason: ErrorReason }).reason]).toBe('PAYLOAD_TOO_LARGE');
    expect((first.value as { metadata: Record<string, string> }).metadata.field).toBe('associated_data');
    expect(res.results!.slice(1).every((r) => r.result!.case === 'response')).toBe(true);
    expect(toBinary(BatchEncryptResponseSchema, create(BatchEncryptResponseSchema, res)).length).toBeLessThanOrEqual(M);
  }, 60_000);

  it('a BatchDecrypt of junk items (errors larger than their 1-byte requests) never gets an oversized reply', async () => {
    const { ctx } = context();
    const requests: { ciphertext: Uint8Array }[] = [];
    for (let i = 0; i < 4; i++) requests.push({ ciphertext: await sealEnvelope(ctx, { key: record, version: 1, suite, serials: [7] } as never, Buffer.alloc(DEFAULT_LIMITS.maxPayloadBytes - 200), Buffer.alloc(0)) });
    for (let i = 0; i < 996; i++) requests.push({ ciphertext: new Uint8Array([0x52]) });
    const req = create(BatchDecryptRequestSchema, { requests });
    expect(toBinary(BatchDecryptRequestSchema, req).length).toBeLessThanOrEqual(M);
    const err = await batchDecrypt(ctx, req).catch((e: unknown) => e);
    expect(reason(err)).toBe('BATCH_TOO_LARGE');
    // Half of it fits, and every item is answered.
    const half = await batchDecrypt(ctx, create(BatchDecryptRequestSchema, { requests: requests.slice(2, 600) }));
    expect(half.results).toHaveLength(598);
    expect(toBinary(BatchDecryptResponseSchema, create(BatchDecryptResponseSchema, half)).length).toBeLessThanOrEqual(M);
    expect(half.results!.filter((r) => r.result!.case === 'response')).toHaveLength(2);
  }, 60_000);
});
