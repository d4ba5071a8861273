/**
 * What a stream holds once its user gives up on it, and sources hashStream cannot read (review by
 * helper-125): a destroyed encryptStream kept its copy of unsent plaintext for as long as the
 * object lived; an ArrayBuffer piece was hashed as nothing.
 */
import { getEventListeners } from 'node:events';
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

  it('a source that cannot be iterated is refused before the RPC starts, and one whose iterator throws cancels it (review by helper-166)', async () => {
    const ac = new AbortController();
    // A Buffer, an array (sync iterables) or null: the RPC was left open with its listener on the signal.
    for (const source of [Buffer.from('abc'), ['abc'], null]) {
      await expect(env.client.hashStream(source as never, 'sha256', { signal: ac.signal })).rejects.toThrow(TypeError);
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    }
    const broken = { [Symbol.asyncIterator]: () => { throw new Error('no iterator'); } };
    await expect(env.client.hashStream(broken as never, 'sha256', { signal: ac.signal })).rejects.toThrow('no iterator');
    await expect.poll(() => getEventListeners(ac.signal, 'abort').length).toBe(0);
  });

  it('Buffers, Uint8Arrays and strings are hashed', async () => {
    const r = await env.client.hashStream(Readable.from([Buffer.from('a'), new Uint8Array([98]), 'c']));
    expect(Buffer.from(r.digest).toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'); // SHA-256("abc"), FIPS 180-2 B.1
  });
});
