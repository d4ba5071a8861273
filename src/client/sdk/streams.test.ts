import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAuthenticationFailed, isCancelled, isInvalidArgument, isNotFound, RingfenceClient, RingfenceError, type StreamKeyInfo } from './index.js';
import { startFakeServer, type FakeServer } from './test-server.js';

const MiB = 1024 * 1024;
let fake: FakeServer;
let client: RingfenceClient;

beforeAll(async () => {
  fake = await startFakeServer();
  client = new RingfenceClient({ socketPath: fake.socketPath });
});
afterAll(async () => {
  await client.close();
  await fake.close();
});

/** `total` pseudo-random bytes in 64 KiB pieces, counting what was pulled. */
function source(total: number, counter: { produced: number }, seed = 'seed'): Readable {
  let i = 0;
  // highWaterMark 1: the source itself reads ahead by one piece, not 16.
  return Readable.from(
    (function* () {
      for (let at = 0; at < total; at += 64 * 1024, i++) {
        const block = createHash('sha512').update(`${seed}:${i}`).digest();
        const piece = Buffer.alloc(Math.min(64 * 1024, total - at), block);
        counter.produced += piece.length;
        yield piece;
      }
    })(),
    { highWaterMark: 1 },
  );
}

function collect(into: Buffer[], opts: { delayMs?: number; onWrite?: (n: number) => void } = {}): Writable {
  return new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      into.push(chunk);
      opts.onWrite?.(chunk.length);
      if (opts.delayMs) setTimeout(cb, opts.delayMs);
      else cb();
    },
  });
}

async function encryptAll(data: Buffer | Readable, opts: { associatedData?: string; chunkBytes?: number } = {}): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(data instanceof Readable ? data : Readable.from([data]), client.encryptStream('k', opts), collect(out));
  return Buffer.concat(out);
}

describe('encryptStream / decryptStream', () => {
  it('round-trips 20 MiB through a slow consumer with bounded buffering', async () => {
    const total = 20 * MiB;
    const counter = { produced: 0 };
    let consumed = 0;
    let maxLead = 0;
    const plainHash = createHash('sha256');
    const expectedHash = createHash('sha256');
    const expected = source(total, { produced: 0 });
    for await (const piece of expected) expectedHash.update(piece as Buffer);
    fake.stats.streamMaxUnflushed = 0;
    fake.stats.chunkSizes.encrypt.length = 0;

    const enc = client.encryptStream('k', { associatedData: 'file-1' });
    const dec = client.decryptStream({ associatedData: 'file-1' });
    const keys: StreamKeyInfo[] = [];
    enc.on('key', (k: StreamKeyInfo) => keys.push(k));
    let slowPieces = 0;
    let maxReadable = 0;
    const sink = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _enc, cb) {
        plainHash.update(chunk);
        consumed += chunk.length;
        maxLead = Math.max(maxLead, counter.produced - consumed);
        maxReadable = Math.max(maxReadable, enc.readableLength, dec.readableLength);
        // Slower than the pipeline can go, so every buffer on the way fills up if it can.
        slowPieces++;
        setTimeout(cb, 8);
      },
    });
    await pipeline(source(total, counter), enc, dec, sink);

    expect(consumed).toBe(total);
    expect(plainHash.digest('hex')).toBe(expectedHash.digest('hex'));
    expect(await enc.key).toEqual({ keyName: 'k', keyVersion: 1 });
    expect(keys).toEqual([{ keyName: 'k', keyVersion: 1 }]);
    expect(await dec.key).toEqual({ keyName: 'k', keyVersion: 1 });
    // Re-chunked into 256 KiB pieces, the last one carrying the final flag.
    const sizes = fake.stats.chunkSizes.encrypt;
    expect(sizes).toHaveLength(80);
    expect(sizes.every((s) => s === 256 * 1024)).toBe(true);
    // The fake never had more than its few responses waiting: the client read and wrote in step.
    expect(fake.stats.streamMaxUnflushed).toBeLessThanOrEqual(4);
    // Each Duplex paused its RPC instead of queueing responses nobody read yet.
    expect(maxReadable).toBeLessThanOrEqual(2 * 256 * 1024);
    // Everything between producer and consumer (two Duplexes, grpc-js, HTTP/2 windows, socket
    // buffers, the fake's few chunks per stream) held a bounded few MiB of the 20, though the
    // consumer was slower than the pipeline throughout (about 5 MiB measured; unbounded writes
    // would let the producer run all 20 MiB ahead).
    expect(slowPieces).toBeGreaterThan(50);
    expect(maxLead).toBeLessThan(8 * MiB);
  }, 60_000);

  it('encrypts the empty stream (one empty final chunk) and decrypts it to nothing', async () => {
    const ciphertext = await encryptAll(Buffer.alloc(0));
    expect(ciphertext.length).toBeGreaterThan(0);
    const out: Buffer[] = [];
    await pipeline(Readable.from([ciphertext]), client.decryptStream(), collect(out));
    expect(Buffer.concat(out).length).toBe(0);
  });

  it('decrypts the ciphertext however it is sliced', async () => {
    const plaintext = randomBytes(300_000);
    const ciphertext = await encryptAll(plaintext, { chunkBytes: 50_000, associatedData: 'ad' });
    const slices: Buffer[] = [];
    for (let at = 0, n = 1; at < ciphertext.length; at += n, n = (n * 7) % 9973 || 1) slices.push(ciphertext.subarray(at, at + n));
    const out: Buffer[] = [];
    await pipeline(Readable.from(slices), client.decryptStream({ associatedData: 'ad', chunkBytes: 4096 }), collect(out));
    expect(Buffer.concat(out).equals(plaintext)).toBe(true);
    expect(Math.max(...fake.stats.chunkSizes.decrypt.slice(-10))).toBeLessThanOrEqual(4096);
  });

  it('an RPC failure mid-stream errors the Duplex with the typed error', async () => {
    const out: Buffer[] = [];
    const enc = client.encryptStream('fail-after-3', { chunkBytes: 64 * 1024 });
    const err = await pipeline(source(2 * MiB, { produced: 0 }), enc, collect(out)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RingfenceError);
    expect((err as RingfenceError).reasonName).toBe('KERNEL_ERROR');
    expect((err as RingfenceError).metadata).toEqual({ errno: 'EIO', call: 'sendmsg' });
  });

  it('a failure before the first response rejects `key` too', async () => {
    const enc = client.encryptStream('missing-stream-key');
    const outcome = pipeline(Readable.from([Buffer.from('x')]), enc, collect([])).catch((e: unknown) => e);
    expect(isNotFound(await enc.key.catch((e: unknown) => e))).toBe(true);
    expect(isNotFound(await outcome)).toBe(true);
  });

  it('tampering and wrong associated data fail decryption with AUTHENTICATION_FAILED', async () => {
    const ciphertext = await encryptAll(randomBytes(100_000), { associatedData: 'right', chunkBytes: 10_000 });
    const tampered = Buffer.from(ciphertext);
    tampered[tampered.length - 200]! ^= 1;
    for (const [bytes, ad] of [
      [tampered, 'right'],
      [ciphertext, 'wrong'],
    ] as const) {
      const err = await pipeline(Readable.from([bytes]), client.decryptStream({ associatedData: ad }), collect([])).catch((e: unknown) => e);
      expect(isAuthenticationFailed(err)).toBe(true);
    }
  });

  it('a truncated stream never ends cleanly: STREAM_TRUNCATED, even though chunks were returned', async () => {
    const plaintext = randomBytes(100_000);
    const ciphertext = await encryptAll(plaintext, { chunkBytes: 10_000 });
    const out: Buffer[] = [];
    const err = await pipeline(Readable.from([ciphertext.subarray(0, ciphertext.length - 5000)]), client.decryptStream(), collect(out)).catch((e: unknown) => e);
    expect(isInvalidArgument(err)).toBe(true);
    expect((err as RingfenceError).reasonName).toBe('STREAM_TRUNCATED');
    expect(Buffer.concat(out).length).toBeGreaterThan(0); // what was read must be discarded
  });

  it('an AbortSignal cancels the stream with CANCELLED, and the daemon sees it', async () => {
    const before = fake.stats.streamsCancelled;
    const ac = new AbortController();
    const enc = client.encryptStream('k', { signal: ac.signal });
    const never = new Readable({ read() {} }); // a source that stalls
    never.push(randomBytes(300_000));
    const outcome = pipeline(never, enc, collect([])).catch((e: unknown) => e);
    await enc.key;
    ac.abort();
    expect(isCancelled(await outcome)).toBe(true);
    await expect.poll(() => fake.stats.streamsCancelled).toBe(before + 1);
  });

  it('destroying the Duplex cancels the RPC', async () => {
    const enc = client.encryptStream('k');
    enc.write(Buffer.from('some data'));
    await enc.key; // the daemon has the stream
    const before = fake.stats.streamsCancelled;
    enc.destroy();
    await expect.poll(() => fake.stats.streamsCancelled).toBe(before + 1);
    expect(isCancelled(await enc.key.then(() => 'resolved earlier', (e: unknown) => e))).toBe(false); // `key` had resolved
  });

  it('refuses chunkBytes outside 1..1 MiB', () => {
    expect(() => client.encryptStream('k', { chunkBytes: 2 * MiB })).toThrow(RangeError);
    expect(() => client.decryptStream({ chunkBytes: 0 })).toThrow(RangeError);
  });
});
