// The engine's bookkeeping on the host, with the AF_ALG layer replaced by a fake that hands out fd
// numbers and completes requests (the host has no AF_ALG; engine.kernel.test.ts checks the crypto
// in the guests). Both findings of a review of the engine (helper-31).
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { KernelAlg } from '../../capabilities/suites.js';

const fake = vi.hoisted(() => ({
  next: 100,
  open: new Set<number>(),
  /** Makes the next read write these bytes into the output, then fail as a bad tag does. */
  failNextRead: undefined as Buffer | undefined,
  /** The output buffers reads were given. */
  outputs: [] as Buffer[],
}));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) => {
  const { SyscallError } = await import('../../../native-ffi/syscall-error.js');
  const real = await importOriginal<typeof import('../../../native-ffi/af-alg.js')>();
  const fd = () => {
    const n = fake.next++;
    fake.open.add(n);
    return n;
  };
  const read = (out: Buffer): number => {
    fake.outputs.push(out);
    const fail = fake.failNextRead;
    if (fail) {
      fake.failNextRead = undefined;
      fail.copy(out);
      throw new SyscallError('read', 74); // EBADMSG
    }
    out.fill(0xab);
    return out.length;
  };
  return {
    ...real,
    openTransform: fd,
    acceptOp: fd,
    setKeyBySerial: () => {},
    setAeadAuthSize: () => {},
    closeFd: (n: number) => void fake.open.delete(n),
    sizeBuffers: () => ({ send: 1 << 20, receive: 1 << 20 }),
    sendRequest: () => {},
    readResult: (_fd: number, out: Buffer) => read(out),
    sendRequestAsync: async () => {},
    // Slow enough that a burst keeps every transform busy at once.
    readResultAsync: async (_fd: number, out: Buffer) => {
      await new Promise((r) => setTimeout(r, 5));
      return read(out);
    },
  };
});

const compared = vi.hoisted(() => ({ calls: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return {
    ...real,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      compared.calls++;
      return real.timingSafeEqual(a, b);
    },
  };
});

const { CryptoEngine } = await import('./engine.js');
const GCM = { type: 'aead', name: 'gcm(aes)' } as KernelAlg;

beforeEach(() => {
  fake.outputs.length = 0;
  fake.failNextRead = undefined;
});

describe('the transform cache', () => {
  it('shrinks back to maxTransforms once a burst over many keys is over', async () => {
    const engine = new CryptoEngine({ maxTransforms: 2, asyncThresholdBytes: 0 });
    // Twenty keys at once: none can be closed while its request runs.
    await Promise.all(Array.from({ length: 20 }, (_, i) => engine.aeadEncrypt(GCM, i + 1, 16, Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(32))));
    expect(engine.openTransforms).toBeGreaterThan(2);
    await engine.aeadEncrypt(GCM, 1000, 16, Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(32));
    expect(engine.openTransforms).toBe(2);
    // Each open transform holds its socket and at most its idle op sockets; the closed ones hold none.
    expect(fake.open.size).toBeLessThanOrEqual(2 * 2);
    engine.close();
    expect(fake.open.size).toBe(0);
  });
});

describe('a failed request', () => {
  it('leaves no bytes of what the kernel wrote in its output buffer (a bad tag: unauthenticated plaintext)', async () => {
    const engine = new CryptoEngine();
    const written = Buffer.from('plaintext whose tag did not verify');
    fake.failNextRead = written;
    const err = await engine.aeadDecrypt(GCM, 7, 16, Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(written.length + 16)).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('AUTHENTICATION_FAILED');
    expect(fake.outputs).toHaveLength(1);
    const out = fake.outputs[0]!;
    expect(out.every((b) => b === 0)).toBe(true);
    engine.close();
  });
});

describe('verifyDigest', () => {
  it('compares MACs with timingSafeEqual (constant time), never byte by byte', async () => {
    const engine = new CryptoEngine();
    const hmac = { type: 'hash', name: 'hmac(sha256)' } as KernelAlg;
    // The fake kernel answers every digest with 0xab bytes.
    const before = compared.calls;
    expect(await engine.verifyDigest(hmac, 9, 32, Buffer.from('data'), Buffer.alloc(32, 0xab))).toBe(true);
    expect(await engine.verifyDigest(hmac, 9, 32, Buffer.from('data'), Buffer.alloc(32, 0xac))).toBe(false);
    expect(compared.calls - before).toBe(2);
    engine.close();
  });
});
