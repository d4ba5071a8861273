// The engine's per-request limit against the API limits at their largest (config.ts bounds): an
// Encrypt, Decrypt or stream chunk within every API limit must fit one kernel request. The AF_ALG
// layer is the host fake (no AF_ALG here); engine.kernel.test.ts checks the crypto in the guests.
import { describe, expect, it, vi } from 'vitest';

// A kernel that sizes the op socket's buffers as asked (the daemon's CAP_NET_ADMIN: SO_SNDBUFFORCE).
vi.mock('../../../native-ffi/af-alg.js', async (orig) => ({
  ...(await import('./fake-af-alg.test-support.js')).fakeAfAlg(await orig<object>()),
  sizeBuffers: (_fd: number, bytes: number) => ({ send: bytes, receive: bytes }),
}));

const { CryptoEngine } = await import('./engine.js');
const { seal, open } = await import('./suite-ops.js');
const { aeadSuite } = await import('../../capabilities/suites.js');
const { HEADER_BYTES } = await import('../ciphertext/envelope.js');
const { STREAM_HEADER_BYTES, CHUNK_PREFIX_BYTES } = await import('../ciphertext/stream-format.js');
const { engineRequestBytes } = await import('../config.js');

const MiB = 1024 * 1024;

describe('engineRequestBytes', () => {
  it.each([
    ['the largest Encrypt with the largest associated data', { maxPayloadBytes: 16 * MiB, maxStreamChunkBytes: MiB, maxAssociatedDataBytes: MiB }, 16 * MiB, HEADER_BYTES],
    ['the largest stream chunk with the largest associated data', { maxPayloadBytes: MiB, maxStreamChunkBytes: 16 * MiB, maxAssociatedDataBytes: MiB }, 16 * MiB, STREAM_HEADER_BYTES + CHUNK_PREFIX_BYTES],
  ])('%s fits one kernel request, sealed and opened (review by helper-116)', async (_, limits, payload, envelope) => {
    const engine = new CryptoEngine({ maxRequestBytes: engineRequestBytes(limits) });
    try {
      for (const name of ['aes-256-gcm', 'aes-256-ctr-hmac-sha256']) {
        const suite = aeadSuite(name)!;
        const serials = suite.name === 'aes-256-gcm' ? [5] : [5, 6];
        const aad = Buffer.alloc(envelope + limits.maxAssociatedDataBytes);
        const sealed = await seal(engine, suite, serials, Buffer.alloc(suite.nonceBytes), aad, Buffer.alloc(payload));
        expect(sealed.length, name).toBe(payload + suite.tagBytes);
        const opened = await open(engine, suite, serials, Buffer.alloc(suite.nonceBytes), aad, sealed);
        expect(opened.length, name).toBe(payload);
      }
    } finally {
      engine.close();
    }
  });
});
