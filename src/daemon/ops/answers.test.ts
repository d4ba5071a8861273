/**
 * What the operations answer to bad requests: gRPC code, ErrorReason and metadata as
 * proto/ringfence/v1/errors.proto documents them (found by review). Host test: a real KeyManager
 * over a node:crypto stand-in for the kernel engine (the kernel's own answers are tested in the guests).
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../../native-ffi/syscall-error.js';
import { cryptoServiceHandlers } from '../api/crypto-service.js';
import { ApiError, ErrorReason, toApiError } from '../api/errors.js';
import { StateWriteError } from '../state/state-store.js';
import { DEFAULT_LIMITS } from '../config.js';
import { EngineError } from '../engine/errors.js';
import type { OpContext } from './context.js';
import { standIn, standInContext } from './stand-in.test-support.js';
import { decrypt } from './decrypt.js';
import { encrypt } from './encrypt.js';
import { generateDataKey } from './generate-data-key.js';
import { generateRandom } from './random.js';
import { hash } from './hash.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';

async function answer(p: Promise<unknown>) {
  const e = toApiError(await p.then(() => undefined, (x: unknown) => x));
  return { code: grpc.status[e.code], reason: ErrorReason[e.reason], message: e.message, metadata: e.metadata };
}

const noAad = new Uint8Array(0);

describe('sizes and lengths', () => {
  it('GenerateRandom: 0 is INVALID_ARGUMENT, too many bytes RESOURCE_EXHAUSTED with the limit', async () => {
    const ctx = await standInContext();
    expect(await answer(generateRandom(ctx, { lengthBytes: 0 } as never))).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'INVALID_FIELD', metadata: { field: 'length_bytes' } });
    const max = DEFAULT_LIMITS.maxPayloadBytes;
    expect(await answer(generateRandom(ctx, { lengthBytes: 0xffffffff } as never))).toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      reason: 'PAYLOAD_TOO_LARGE',
      metadata: { field: 'length_bytes', actual_bytes: '4294967295', limit_bytes: String(max) },
    });
    expect(((await generateRandom(ctx, { lengthBytes: max } as never)).data as Uint8Array).length).toBe(max);
  });

  it('Encrypt under aes-256-ccm: 16 MiB, within the limits, is RESOURCE_EXHAUSTED with the suite\'s bound in metadata (found by review)', async () => {
    const ctx = await standInContext();
    ctx.limits.maxPayloadBytes = 16 << 20;
    await ctx.keys.create({ name: 'ccm', suite: 'aes-256-ccm' });
    // RFC 3610: a 12-byte nonce leaves a 3-byte length, so at most 2^24 - 1 bytes per message.
    expect(await answer(encrypt(ctx, { keyName: 'ccm', plaintext: new Uint8Array(16 << 20), associatedData: noAad } as never))).toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      reason: 'PAYLOAD_TOO_LARGE',
      metadata: { field: 'plaintext', actual_bytes: String(16 << 20), limit_bytes: String(2 ** 24 - 1) },
    });
  });

  it('GenerateDataKey: more than 1024 bytes is RESOURCE_EXHAUSTED', async () => {
    const ctx = await standInContext();
    expect(await answer(generateDataKey(ctx, { keyName: 'k', lengthBytes: 1025, associatedData: noAad } as never))).toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      reason: 'PAYLOAD_TOO_LARGE',
      metadata: { field: 'length_bytes', actual_bytes: '1025', limit_bytes: '1024' },
    });
    expect(((await generateDataKey(ctx, { keyName: 'k', lengthBytes: 1024, associatedData: noAad } as never)).plaintext as Uint8Array).length).toBe(1024);
  });
});

describe('hash algorithms the kernel refuses', () => {
  it('restricted: names the algorithm and what the kernel allows; missing: names it and points at doctor', async () => {
    const ctx = await standInContext();
    const status: Record<string, string> = { sha256: 'available', sha512: 'available', 'blake2b-256': 'restricted', 'sha3-256': 'missing' };
    ctx.suiteStatus = ((name: string) => status[name] ?? 'restricted') as never;
    expect(await answer(hash(ctx, { algorithm: HashAlgorithm.BLAKE2B_256, data: new Uint8Array(1) } as never))).toEqual({
      code: 'FAILED_PRECONDITION',
      reason: 'SUITE_RESTRICTED_BY_KERNEL',
      message: 'this kernel refuses blake2b-256 to the daemon (af_alg_restrict=1); use one it allows (sha256, sha512)',
      metadata: { suite: 'blake2b-256', kernel_algorithm: 'blake2b-256', allowed: 'sha256,sha512' },
    });
    expect(await answer(hash(ctx, { algorithm: HashAlgorithm.SHA3_256, data: new Uint8Array(1) } as never))).toMatchObject({
      code: 'FAILED_PRECONDITION',
      reason: 'SUITE_UNAVAILABLE',
      metadata: { suite: 'sha3-256', kernel_algorithm: 'sha3-256' },
    });
  });
});

describe('key names', () => {
  it('a name no key can have is INVALID_ARGUMENT, and the answer does not quote it', async () => {
    const ctx = await standInContext();
    for (const name of ['bad name\n\x1b[31mFAKE LOG LINE', ' k', 'k\u0000', '€'.repeat(10), 'a'.repeat(65), '-k']) {
      const a = await answer(encrypt(ctx, { keyName: name, plaintext: new Uint8Array(1), associatedData: noAad } as never));
      expect(a).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'INVALID_FIELD', metadata: { field: 'key_name' } });
      expect(a.message).toBe('key_name is not a key name: key names are 1 to 64 characters from [A-Za-z0-9._-], starting with a letter or digit');
      expect(a.metadata.constraint).toBe(a.message);
    }
    // A well-formed name that does not exist is still NOT_FOUND.
    expect(await answer(encrypt(ctx, { keyName: 'a'.repeat(64), plaintext: new Uint8Array(1), associatedData: noAad } as never))).toMatchObject({ code: 'NOT_FOUND', reason: 'KEY_NOT_FOUND' });
  });
});

describe('Decrypt of the wrong kind of ciphertext', () => {
  async function sealed(ctx: OpContext): Promise<Buffer> {
    return Buffer.from((await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('hi'), associatedData: noAad } as never)).ciphertext as Uint8Array);
  }

  it('a stream ciphertext or format 0 is malformed here; a newer format is unsupported', async () => {
    const ctx = await standInContext();
    const ct = await sealed(ctx);
    const withFormat = (f: number) => Buffer.concat([ct.subarray(0, 2), Buffer.from([f]), ct.subarray(3)]);
    expect(await answer(decrypt(ctx, { ciphertext: withFormat(2), associatedData: noAad } as never))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      reason: 'CIPHERTEXT_MALFORMED',
      message: 'not a Decrypt ciphertext: this is a stream ciphertext; decrypt it with DecryptStream',
    });
    expect(await answer(decrypt(ctx, { ciphertext: withFormat(0), associatedData: noAad } as never))).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'CIPHERTEXT_MALFORMED' });
    expect(await answer(decrypt(ctx, { ciphertext: withFormat(3), associatedData: noAad } as never))).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'CIPHERTEXT_FORMAT_UNSUPPORTED', metadata: { format_version: '3' } });
    expect(Buffer.from((await decrypt(ctx, { ciphertext: ct, associatedData: noAad } as never)).plaintext as Uint8Array).toString()).toBe('hi');
  });

  it('a header naming a MAC key was altered: CIPHERTEXT_MALFORMED, not a purpose mismatch', async () => {
    const ctx = await standInContext();
    const ct = await sealed(ctx);
    // Header: "RF", format, suite, then the 16-byte key id (ciphertext/envelope.ts).
    Buffer.from(ctx.keys.get('m').id, 'hex').copy(ct, 4);
    expect(await answer(decrypt(ctx, { ciphertext: ct, associatedData: noAad } as never))).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'CIPHERTEXT_MALFORMED', metadata: { key_name: 'm' } });
  });
});

describe('errors from below the API', () => {
  it('AF_ALG gone: UNAVAILABLE with the errno', () => {
    const e = toApiError(new EngineError('AF_ALG_UNAVAILABLE', 'no AF_ALG', { errno: 'EAFNOSUPPORT' }));
    expect([grpc.status[e.code], ErrorReason[e.reason], e.metadata]).toEqual(['UNAVAILABLE', 'AF_ALG_UNAVAILABLE', { errno: 'EAFNOSUPPORT' }]);
  });

  it('an algorithm gone since start-up: restricted or missing, as the kernel says, naming it', () => {
    const restricted = toApiError(new EngineError('ALGORITHM_UNAVAILABLE', 'gcm(aes): not offered', { errno: 'ENOENT', algorithm: 'gcm(aes)', restricted: true }));
    expect([grpc.status[restricted.code], ErrorReason[restricted.reason], restricted.metadata]).toEqual(['FAILED_PRECONDITION', 'SUITE_RESTRICTED_BY_KERNEL', { kernel_algorithm: 'gcm(aes)', suite: 'aes-256-gcm' }]);
    // A kernel algorithm two suites need (aes-256-ctr-hmac-sha256, hmac-sha256) names neither: `suite` is one name.
    const hmac = toApiError(new EngineError('ALGORITHM_UNAVAILABLE', 'hmac(sha256): not offered', { errno: 'ENOENT', algorithm: 'hmac(sha256)' }));
    expect(hmac.metadata).toEqual({ kernel_algorithm: 'hmac(sha256)' });
    const missing = toApiError(new EngineError('ALGORITHM_UNAVAILABLE', 'gcm(aes): not offered', { errno: 'ENOENT', algorithm: 'gcm(aes)' }));
    expect(ErrorReason[missing.reason]).toBe('SUITE_UNAVAILABLE');
    expect(missing.message).toContain('`ringfence doctor`');
  });

  it('a failed getrandom is a kernel error naming the call, not a state-directory error', () => {
    for (const errno of [13, 38]) {
      const e = toApiError(new SyscallError('getrandom', errno), 'generating random bytes');
      expect([grpc.status[e.code], ErrorReason[e.reason]]).toEqual(['INTERNAL', 'KERNEL_ERROR']);
      expect(e.metadata).toEqual({ errno: errno === 13 ? 'EACCES' : 'ENOSYS', call: 'getrandom' });
    }
    // The state store's own file errors keep their meaning.
    const fsErr = Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
    expect(ErrorReason[toApiError(fsErr).reason]).toBe('STATE_NOT_PERSISTED');
  });

  it('a state save refused with any errno says the state was not written, naming the errno (review helper-47)', () => {
    const fsError = (code: string, syscall: string) => Object.assign(new Error(`${code}: refused, ${syscall}`), { code, syscall });
    // An immutable state.json (chattr +i), LimitFSIZE=, a removed directory: were "internal error ... kernel".
    for (const [code, syscall] of [['EPERM', 'rename'], ['EFBIG', 'write'], ['ENOENT', 'open']]) {
      const e = toApiError(new StateWriteError(fsError(code!, syscall!)), 'creating key k');
      expect([grpc.status[e.code], ErrorReason[e.reason], e.metadata]).toEqual(['INTERNAL', 'STATE_NOT_PERSISTED', { errno: code }]);
      expect(e.message).toBe(`the state could not be written (${code} in ${syscall}); nothing was changed`);
    }
    const full = toApiError(new StateWriteError(fsError('ENOSPC', 'write')));
    expect([grpc.status[full.code], ErrorReason[full.reason]]).toEqual(['RESOURCE_EXHAUSTED', 'STATE_NOT_PERSISTED']);
  });

  it('an INTERNAL batch item is logged with its cause, as a unary call is; once per batch, not per item', async () => {
    const ctx = await standInContext();
    const log = { error: vi.fn(), info: vi.fn(), warn: vi.fn() };
    const deps = {
      audit: vi.fn(),
      log,
      access: { forCall: () => ({ principal: { uid: 1000, gid: 1000, pid: 1, groups: [] }, authorize: () => {}, allows: () => true, mayEverDo: () => true }) },
    };
    const handlers = cryptoServiceHandlers(ctx, deps as never) as unknown as Record<string, (call: unknown, cb: (e: unknown, r?: unknown) => void) => void>;
    const call = (request: unknown) => ({ request, getPeer: () => '', metadata: new grpc.Metadata() });
    standIn.fault = new Error('an engine failure nobody expected');
    try {
      const reply = await new Promise<{ results: { result: { case: string; value: { code: number } } }[] }>((resolve, reject) =>
        handlers.batchEncrypt!(call({ requests: Array.from({ length: 50 }, () => ({ keyName: 'k', plaintext: new Uint8Array(1), associatedData: noAad })) }), (e, r) => (e ? reject(e as Error) : resolve(r as never))),
      );
      expect(reply.results.map((r) => r.result.value.code)).toEqual(Array(50).fill(grpc.status.INTERNAL));
    } finally {
      standIn.fault = undefined;
    }
    expect(log.error).toHaveBeenCalledTimes(1);
    const [fields, msg] = log.error.mock.calls[0]!;
    expect(msg).toBe('internal error in Batch/encrypt');
    expect((fields as { err: Error }).err.message).toBe('an engine failure nobody expected');
  });
});

it('keeps ApiError as is', () => {
  const e = new ApiError(grpc.status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND, 'x');
  expect(toApiError(e)).toBe(e);
});
