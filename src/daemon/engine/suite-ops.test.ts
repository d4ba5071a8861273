import { createCipheriv, createHmac, timingSafeEqual } from 'node:crypto';
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

/**
 * The encrypt-then-MAC composition on the host, over node:crypto primitives standing in for the
 * kernel's ctr(aes) and hmac(sha256) (the guests cross-check the kernel; this pins the construction).
 */
describe('aes-256-ctr-hmac-sha256 composition', () => {
  const keys = new Map([[1, Buffer.from([...Array(32).keys()])], [2, Buffer.from([...Array(32).keys()].map((i) => i + 32))]]);
  const hmac = (serial: number, n: number, parts: Buffer[]) => {
    const h = createHmac('sha256', keys.get(serial)!);
    for (const p of parts) h.update(p);
    return h.digest().subarray(0, n);
  };
  const node = {
    skcipher: async (_alg: unknown, serial: number, _encrypt: boolean, iv: Buffer, data: Buffer) => {
      const c = createCipheriv('aes-256-ctr', keys.get(serial)!, iv);
      return Buffer.concat([c.update(data), c.final()]);
    },
    digest: async (_alg: unknown, serial: number, n: number, parts: Buffer[]) => hmac(serial, n, parts),
    verifyDigest: async (_alg: unknown, serial: number, n: number, parts: Buffer[], mac: Buffer) => mac.length === n && timingSafeEqual(hmac(serial, n, parts), mac),
  } as unknown as CryptoEngine;
  const nonce = Buffer.from([...Array(12).keys()].map((i) => i + 64));
  const aad = Buffer.from('ringfence header||aad');
  const pt = Buffer.from('attack at dawn, then again at dusk');

  it('matches a pinned answer: ctr(aes) under the first key from nonce || 0, full HMAC-SHA256 under the second of AAD || nonce || ct || AAD bits', async () => {
    const sealed = await seal(node, etm, [1, 2], nonce, aad, pt, 3);
    expect(sealed.subarray(3).toString('hex')).toBe(
      '262d9fc74739b325f8cbf364cdc93919bddba7509eac0ea5abb65ba30ac32c6591d2e13715195584acaa43918ee5c7d0490916be6608d251538275c27ff5c2e11c2a',
    );
    expect((await open(node, etm, [1, 2], nonce, aad, sealed.subarray(3))).equals(pt)).toBe(true);
  });

  it('refuses any flipped bit, a byte moved between AAD and ciphertext, a cut tag and swapped keys', async () => {
    const sealed = await seal(node, etm, [1, 2], nonce, aad, pt);
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i]! ^= 0x01;
      expect(await codeOf(open(node, etm, [1, 2], nonce, aad, bad))).toBe('AUTHENTICATION_FAILED');
    }
    expect(await codeOf(open(node, etm, [1, 2], nonce, Buffer.concat([aad, sealed.subarray(0, 1)]), sealed.subarray(1)))).toBe('AUTHENTICATION_FAILED');
    expect(await codeOf(open(node, etm, [1, 2], nonce, aad.subarray(0, -1), Buffer.concat([aad.subarray(-1), sealed])))).toBe('AUTHENTICATION_FAILED');
    expect(await codeOf(open(node, etm, [1, 2], nonce, aad, sealed.subarray(0, -1)))).toBe('AUTHENTICATION_FAILED');
    expect(await codeOf(open(node, etm, [1, 2], nonce, aad, sealed.subarray(0, 31)))).toBe('AUTHENTICATION_FAILED');
    expect(await codeOf(open(node, etm, [2, 1], nonce, aad, sealed))).toBe('AUTHENTICATION_FAILED');
  });
});
