/**
 * What a stream holds once its user gives up on it, and sources hashStream cannot read (review by
 * helper-125): a destroyed encryptStream kept its copy of unsent plaintext for as long as the
 * object lived; an ArrayBuffer piece was hashed as nothing.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();

const isZero = (b: Uint8Array) => b.every((x) => x === 0);

describe('a stream destroyed before its user read or sent everything', () => {
  it('encryptStream: its own copy of unsent plaintext is zeroed; the caller\'s buffer is left alone', async () => {
    const e = env.client.encryptStream('k', { chunkBytes: 100_000 });
    e.on('error', () => {});
    const input = Buffer.alloc(50_000, 0x42);
    await new Promise<void>((resolve, reject) => e.write(input, (err) => (err ? reject(err) : resolve())));
    const parts = (e as unknown as { rechunker: { parts: Buffer[] } }).rechunker.parts;
    const copies = [...parts];
    expect(copies.length).toBeGreaterThan(0);
    expect(copies.every((c) => c.buffer !== input.buffer && !isZero(c))).toBe(true); // copied at the write callback
    e.destroy();
    expect(copies.every(isZero)).toBe(true);
    expect(input.every((x) => x === 0x42)).toBe(true);
  });
});

describe('hashStream sources', () => {
  it('an ArrayBuffer piece is refused with a TypeError, not hashed as nothing', async () => {
    await expect(env.client.hashStream(Readable.from([new ArrayBuffer(10)]))).rejects.toThrow(TypeError);
  });

  it('Buffers, Uint8Arrays and strings are hashed', async () => {
    const r = await env.client.hashStream(Readable.from([Buffer.from('a'), new Uint8Array([98]), 'c']));
    expect(Buffer.from(r.digest).toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'); // SHA-256("abc"), FIPS 180-2 B.1
  });
});
