// runDigest on the host: an error raised by the caller's input stream (HashStream's "a later message
// names a different algorithm", an undecodable message) reaches the API as it is, not as the kernel's
// INTERNAL; the stream's own op socket is closed either way. The error comes before any byte reaches AF_ALG.
import { describe, expect, it, vi } from 'vitest';
import { runDigest } from './request.js';
import { EngineError } from './errors.js';
import type { Transform } from './transform.js';

describe('runDigest', () => {
  it("rethrows the input stream's own error unchanged and closes the stream's op socket", async () => {
    const closeDedicated = vi.fn();
    const tfm = { spec: { alg: { type: 'hash', name: 'sha256' } }, acceptDedicated: () => 1234, closeDedicated, tryAcquire: vi.fn(), release: vi.fn() } as unknown as Transform;
    const mine = new Error('a later HashStream message names a different algorithm');
    async function* input(): AsyncGenerator<Buffer> {
      throw mine;
    }
    const err = await runDigest(tfm, { maxRequestBytes: 1024, asyncThresholdBytes: 1024 }, input(), 32).catch((e: unknown) => e);
    expect(err).toBe(mine);
    expect(err).not.toBeInstanceOf(EngineError);
    expect(closeDedicated).toHaveBeenCalledWith(1234);
    // A stream's input takes a socket of its own, never one of the pool's.
    expect(tfm.tryAcquire).not.toHaveBeenCalled();
  });
});
