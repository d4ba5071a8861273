import { describe, expect, it } from 'vitest';
import { aeadSuite } from '../../capabilities/suites.js';
import { CryptoEngine } from './engine.js';
import { isEngineError } from './errors.js';
import { open, seal } from './suite-ops.js';

// Argument checks happen before any AF_ALG call, so they run on the host too.
const engine = new CryptoEngine();
const etm = aeadSuite('aes-256-ctr-hmac-sha256')!;
const gcm = aeadSuite('aes-256-gcm')!;

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(isEngineError(err)).toBe(true);
  return (err as { code: string }).code;
}

describe('suite argument checks', () => {
  it('refuses one kernel key used as both cipher and MAC key', async () => {
    expect(await codeOf(seal(engine, etm, [5, 5], Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(1)))).toBe('INVALID_ARGUMENT');
  });

  it('refuses the wrong number of keys and a nonce of the wrong size', async () => {
    expect(await codeOf(seal(engine, etm, [5], Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(1)))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(seal(engine, gcm, [5], Buffer.alloc(8), Buffer.alloc(0), Buffer.alloc(1)))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(open(engine, gcm, [5, 6], Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(16)))).toBe('INVALID_ARGUMENT');
  });

  it('CCM refuses 2^24 bytes or more, which its 3-byte length cannot state (found by review); 2^24 - 1 reaches the kernel', async () => {
    const ccm = aeadSuite('aes-256-ccm')!;
    // An engine whose own request limit is far above: the refusal must be the suite's.
    const engine = new CryptoEngine({ maxRequestBytes: 64 << 20 });
    const tooLong = Buffer.alloc(2 ** 24);
    expect(await codeOf(seal(engine, ccm, [5], Buffer.alloc(12), Buffer.alloc(0), tooLong))).toBe('PAYLOAD_TOO_LARGE');
    // Earlier versions sealed exactly 2^24 (the kernel opens those); anything longer is no ciphertext of this suite.
    expect(await codeOf(open(engine, ccm, [5], Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(2 ** 24 + 1 + 16)))).toBe('AUTHENTICATION_FAILED');
    expect(await codeOf(open(engine, ccm, [5], Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(2 ** 24 + 16)))).not.toBe('AUTHENTICATION_FAILED');
    // One byte less passes the check and fails only where the host has no AF_ALG.
    expect(await codeOf(seal(engine, ccm, [5], Buffer.alloc(12), Buffer.alloc(0), tooLong.subarray(1)))).not.toBe('PAYLOAD_TOO_LARGE');
    // Other suites have no such limit here.
    expect(await codeOf(seal(engine, gcm, [5], Buffer.alloc(12), Buffer.alloc(0), tooLong))).not.toBe('PAYLOAD_TOO_LARGE');
  });
});
