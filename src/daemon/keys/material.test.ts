/**
 * KeyMaterial's handling of sealed blobs a kernel cannot open (a move to a restricted kernel), with a
 * stand-in engine: the host has no AF_ALG. Sealing and opening for real: the kernel tests.
 */
import { describe, expect, it } from 'vitest';
import { aeadSuite } from '../../capabilities/suites.js';
import type { CryptoEngine } from '../engine/engine.js';
import { EngineError, type EngineErrorCode } from '../engine/errors.js';
import type { KernelKeystore } from '../keystore/kernel-keystore.js';
import { KeyMaterial, WRAP_SUITES } from './material.js';

const keystore = { masterKeySerial: 1 } as unknown as KernelKeystore;
const engineFailing = (code: EngineErrorCode) =>
  ({
    aeadDecrypt: async () => {
      throw new EngineError(code, `gcm(aes): ${code}`);
    },
    forgetKey: () => {},
  }) as unknown as CryptoEngine;
const ccm = aeadSuite('aes-256-ccm')!;
/** A check sealed with GCM: nonce (12) + sealed 32-byte canary + tag (16). */
const gcmCheck = `sealed:aes-256-gcm:${Buffer.alloc(12 + 32 + 16, 1).toString('base64')}`;

describe('KeyMaterial and a kernel that refuses the suite a blob was sealed with', () => {
  it('seals with AES-256-CCM first: restricted kernels allow it where they refuse GCM', () => {
    expect(WRAP_SUITES.map((s) => s.name)).toEqual(['aes-256-ccm', 'aes-256-gcm', 'chacha20-poly1305']);
  });

  it('reports a master-key check it cannot try (false), but a wrong master key is still MASTER_KEY_MISMATCH', async () => {
    await expect(new KeyMaterial(keystore, engineFailing('ALGORITHM_UNAVAILABLE'), ccm).verifyMasterCheck(gcmCheck)).resolves.toBe(false);
    await expect(new KeyMaterial(keystore, engineFailing('AUTHENTICATION_FAILED'), ccm).verifyMasterCheck(gcmCheck)).rejects.toMatchObject({ code: 'MASTER_KEY_MISMATCH' });
  });

  it('an imported key sealed with such a suite fails to load saying which suite and what to do', async () => {
    const err = await new KeyMaterial(keystore, engineFailing('ALGORITHM_UNAVAILABLE'), ccm).restore('ab'.repeat(16), 1, 'imported', [gcmCheck]).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'KeystoreError', code: 'KEY_TYPE_UNSUPPORTED' });
    expect((err as Error).message).toMatch(/sealed under the master key with aes-256-gcm, which this kernel refuses .*rotate the key with new material, or delete it and import its material again once it is gone/);
  });
});
