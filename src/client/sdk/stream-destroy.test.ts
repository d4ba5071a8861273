/**
 * What a stream holds once its user gives up on it, and sources hashStream cannot read (review by
 * helper-125): a destroyed decryptStream kept unread plaintext, a destroyed encryptStream its copy
 * of unsent plaintext, for as long as the object lived; an ArrayBuffer piece was hashed as nothing.
 */
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it, vi } from 'vitest';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();

const isZero = (b: Uint8Array) => b.every((x) => x === 0);

describe('a stream destroyed before its user read or sent everything', () => {
  it('decryptStream: the plaintext it holds unread is zeroed', async () => {
    const out: Buffer[] = [];
    const collect = new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) });
    await pipeline(Readable.from([randomBytes(2 * 1024 * 1024)]), env.client.encryptStream('k'), collect);
    const d = env.client.decryptStream();
    d.on('error', () => {});
    d.end(Buffer.concat(out));
    d.read(0); // starts the flow of answers into the readable buffer; nobody reads them
    await vi.waitFor(() => expect(d.readableLength).toBeGreaterThan(0));
    const held = [...(d as unknown as { readableBuffer: Iterable<Buffer> }).readableBuffer];
    expect(held.some((b) => !isZero(b))).toBe(true);
    d.destroy();
    expect(held.every(isZero)).toBe(true);
  });

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
