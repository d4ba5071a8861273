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
});
