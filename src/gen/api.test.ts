/**
 * The generated API (src/gen, from proto/ringfence/v1) has every RPC issue 3 asks for, with the
 * right streaming kind; messages round-trip through the binary and JSON encodings; and the
 * committed code is what proto/ generates (scripts/check-generated.sh: buf lint, buf format,
 * regenerate and compare).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { create, fromBinary, fromJson, toBinary, toJson, type DescService } from '@bufbuild/protobuf';
import { durationFromMs, timestampFromDate, timestampDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { BatchDecryptResponseSchema } from './ringfence/v1/batch_pb.js';
import { EncryptRequestSchema, HashRequestSchema } from './ringfence/v1/crypto_pb.js';
import { CryptoService } from './ringfence/v1/crypto_service_pb.js';
import { ErrorReason, ItemStatusSchema } from './ringfence/v1/errors_pb.js';
import { KeyOrigin, KeyPurpose, KeySchema, KeyState, KeyVersionState } from './ringfence/v1/key_pb.js';
import { KeyService, UpdateKeyRequestSchema } from './ringfence/v1/key_service_pb.js';
import { SessionRequestSchema, SessionResponseSchema } from './ringfence/v1/session_pb.js';
import { StatusService } from './ringfence/v1/status_service_pb.js';
import { EncryptStreamRequestSchema } from './ringfence/v1/stream_pb.js';
import { HashAlgorithm, Suite } from './ringfence/v1/suite_pb.js';

type Kind = 'unary' | 'client_streaming' | 'server_streaming' | 'bidi_streaming';

function kinds(service: DescService): Record<string, Kind> {
  return Object.fromEntries(service.methods.map((m) => [m.name, m.methodKind]));
}

describe('service descriptors', () => {
  it('KeyService has every key-management RPC, all unary', () => {
    expect(KeyService.typeName).toBe('ringfence.v1.KeyService');
    expect(kinds(KeyService)).toEqual({
      CreateKey: 'unary',
      ImportKey: 'unary',
      GetKey: 'unary',
      ListKeys: 'unary',
      RotateKey: 'unary',
      UpdateKey: 'unary',
      DisableKey: 'unary',
      EnableKey: 'unary',
      ScheduleKeyDeletion: 'unary',
      CancelKeyDeletion: 'unary',
    });
  });

  it('CryptoService has every crypto RPC with the right streaming kind', () => {
    expect(CryptoService.typeName).toBe('ringfence.v1.CryptoService');
    expect(kinds(CryptoService)).toEqual({
      Encrypt: 'unary',
      Decrypt: 'unary',
      ReEncrypt: 'unary',
      GenerateDataKey: 'unary',
      ComputeMac: 'unary',
      VerifyMac: 'unary',
      Hash: 'unary',
      HashStream: 'client_streaming',
      GenerateRandom: 'unary',
      BatchEncrypt: 'unary',
      BatchDecrypt: 'unary',
      BatchComputeMac: 'unary',
      EncryptStream: 'bidi_streaming',
      DecryptStream: 'bidi_streaming',
      Session: 'bidi_streaming',
    });
  });

  it('StatusService has GetStatus', () => {
    expect(kinds(StatusService)).toEqual({ GetStatus: 'unary' });
  });

  it('names every request and response after its RPC', () => {
    for (const service of [KeyService, CryptoService, StatusService]) {
      for (const m of service.methods) {
        expect(m.input.typeName).toBe(`ringfence.v1.${m.name}Request`);
        expect(m.output.typeName).toBe(`ringfence.v1.${m.name}Response`);
      }
    }
  });

  it('every descriptor comes from its own proto file of package ringfence.v1', () => {
    expect(KeyService.file.name).toBe('ringfence/v1/key_service');
    expect(CryptoService.file.name).toBe('ringfence/v1/crypto_service');
    expect(StatusService.file.name).toBe('ringfence/v1/status_service');
    expect(CryptoService.method.encrypt.name).toBe('Encrypt');
  });
});

describe('messages round-trip', () => {
  const key = create(KeySchema, {
    id: '00112233445566778899aabbccddeeff',
    name: 'payments',
    purpose: KeyPurpose.AEAD,
    suite: Suite.AES_256_CCM,
    origin: KeyOrigin.GENERATED_IN_KERNEL,
    state: KeyState.ENABLED,
    versions: [
      { version: 1, state: KeyVersionState.DISABLED, createTime: timestampFromDate(new Date('2026-01-01T00:00:00Z')), encryptionCount: 5n, encryptionLimit: 2n ** 32n },
      { version: 2, state: KeyVersionState.ENABLED, createTime: timestampFromDate(new Date('2026-02-01T00:00:00Z')), encryptionCount: 2n ** 33n, encryptionLimit: 2n ** 32n },
    ],
    primaryVersion: 2,
    minDecryptionVersion: 2,
    rotationPeriod: durationFromMs(30 * 24 * 3600 * 1000),
    nextRotationTime: timestampFromDate(new Date('2026-03-03T00:00:00Z')),
    deletionProtection: true,
    createTime: timestampFromDate(new Date('2026-01-01T00:00:00Z')),
    rotateTime: timestampFromDate(new Date('2026-02-01T00:00:00Z')),
  });

  it('Key through binary and JSON (well-known types, 64-bit counters, enums)', () => {
    expect(fromBinary(KeySchema, toBinary(KeySchema, key))).toEqual(key);
    const json = toJson(KeySchema, key);
    expect(json).toMatchObject({
      purpose: 'KEY_PURPOSE_AEAD',
      suite: 'SUITE_AES_256_CCM',
      rotationPeriod: '2592000s',
      createTime: '2026-01-01T00:00:00Z',
      versions: [{ encryptionCount: '5' }, { encryptionCount: '8589934592' }],
    });
    const back = fromJson(KeySchema, json);
    expect(back).toEqual(key);
    expect(timestampDate(back.rotateTime!).toISOString()).toBe('2026-02-01T00:00:00.000Z');
  });

  it('EncryptRequest keeps bytes exactly (binary; base64 in JSON)', () => {
    const req = create(EncryptRequestSchema, {
      keyName: 'payments',
      plaintext: new Uint8Array([0, 1, 2, 255]),
      associatedData: new TextEncoder().encode('order:42'),
    });
    expect(fromBinary(EncryptRequestSchema, toBinary(EncryptRequestSchema, req))).toEqual(req);
    const json = toJson(EncryptRequestSchema, req);
    expect(json).toEqual({ keyName: 'payments', plaintext: 'AAEC/w==', associatedData: 'b3JkZXI6NDI=' });
    expect(fromJson(EncryptRequestSchema, json)).toEqual(req);
  });

  it('UpdateKeyRequest tells unset optional fields from zero values', () => {
    const none = create(UpdateKeyRequestSchema, { name: 'k' });
    const some = create(UpdateKeyRequestSchema, { name: 'k', minDecryptionVersion: 3, deletionProtection: false, rotationPeriod: durationFromMs(0) });
    const n = fromBinary(UpdateKeyRequestSchema, toBinary(UpdateKeyRequestSchema, none));
    const s = fromBinary(UpdateKeyRequestSchema, toBinary(UpdateKeyRequestSchema, some));
    expect([n.minDecryptionVersion, n.deletionProtection, n.rotationPeriod]).toEqual([undefined, undefined, undefined]);
    expect([s.minDecryptionVersion, s.deletionProtection, s.rotationPeriod?.seconds]).toEqual([3, false, 0n]);
  });

  it('Session requests and responses carry ids and oneof operations', () => {
    const req = create(SessionRequestSchema, {
      id: 2n ** 53n + 1n,
      op: { case: 'encrypt', value: { keyName: 'k', plaintext: new Uint8Array(1024) } },
    });
    const r = fromBinary(SessionRequestSchema, toBinary(SessionRequestSchema, req));
    expect(r.id).toBe(2n ** 53n + 1n);
    expect(r.op.case).toBe('encrypt');
    expect(fromJson(SessionRequestSchema, toJson(SessionRequestSchema, req))).toEqual(req);

    const res = create(SessionResponseSchema, {
      id: 7n,
      result: { case: 'error', value: { code: 5, message: 'no key named "k"', reason: ErrorReason.KEY_NOT_FOUND, metadata: { key_name: 'k' } } },
    });
    const json = toJson(SessionResponseSchema, res);
    expect(json).toEqual({ id: '7', error: { code: 5, message: 'no key named "k"', reason: 'ERROR_REASON_KEY_NOT_FOUND', metadata: { key_name: 'k' } } });
    expect(fromBinary(SessionResponseSchema, toBinary(SessionResponseSchema, res))).toEqual(res);
  });

  it('batch results hold a response or an ItemStatus', () => {
    const res = create(BatchDecryptResponseSchema, {
      results: [
        { result: { case: 'response', value: { plaintext: new Uint8Array([1]), keyName: 'k', keyVersion: 1 } } },
        { result: { case: 'error', value: { code: 3, reason: ErrorReason.AUTHENTICATION_FAILED } } },
      ],
    });
    const back = fromBinary(BatchDecryptResponseSchema, toBinary(BatchDecryptResponseSchema, res));
    expect(back.results.map((r) => r.result.case)).toEqual(['response', 'error']);
    expect(fromJson(BatchDecryptResponseSchema, toJson(BatchDecryptResponseSchema, res))).toEqual(res);
  });

  it('stream frames: header first, then chunks with a final flag', () => {
    const header = create(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k', associatedData: new Uint8Array([9]) } } });
    const last = create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: new Uint8Array(3), final: true } } });
    for (const m of [header, last]) expect(fromBinary(EncryptStreamRequestSchema, toBinary(EncryptStreamRequestSchema, m))).toEqual(m);
    expect(toJson(EncryptStreamRequestSchema, last)).toEqual({ chunk: { plaintext: 'AAAA', final: true } });
  });

  it('enums: unspecified is 0, values drop their prefix in TypeScript', () => {
    expect(create(HashRequestSchema).algorithm).toBe(HashAlgorithm.UNSPECIFIED);
    expect(HashAlgorithm.UNSPECIFIED).toBe(0);
    // ErrorInfo.reason strings are the TypeScript names.
    expect(ErrorReason[ErrorReason.SUITE_RESTRICTED_BY_KERNEL]).toBe('SUITE_RESTRICTED_BY_KERNEL');
    expect(create(ItemStatusSchema).reason).toBe(ErrorReason.UNSPECIFIED);
  });
});

describe('generated code is current', () => {
  it('npm run generate:check passes (buf lint, buf format, regenerate and compare)', () => {
    const script = fileURLToPath(new URL('../../scripts/check-generated.sh', import.meta.url));
    const r = spawnSync('bash', [script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/src\/gen up to date/);
  }, 90_000);
});
