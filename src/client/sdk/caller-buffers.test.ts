/**
 * The SDK never reads a caller's buffer after handing control back (review by helper-102): a
 * Writable's write callback says the buffer may be reused (an fs.read loop does), and a caller may
 * wipe its plaintext once a session operation was made. Both used to change what was encrypted
 * (the stream ended OK with a ciphertext of other bytes) or fail a valid ciphertext. Against the
 * fake server, which encrypts with node:crypto: the round trip is checked byte for byte.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();
const collect = (into: Buffer[]) => new Writable({ write(c: Buffer, _e, cb) { into.push(c); cb(); } });
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const writeAndWait = (w: Writable, b: Buffer) => new Promise<void>((res, rej) => w.write(b, (e) => (e ? rej(e) : res())));

describe("stream Duplexes do not hold a caller's buffer past its write callback", () => {
  it('encryptStream: a writer reusing one buffer gets the ciphertext of the bytes it wrote', async () => {
    const blocks = [randomBytes(64 * 1024), randomBytes(64 * 1024), randomBytes(64 * 1024), randomBytes(100 * 1024), randomBytes(10)];
    const enc = env.client.encryptStream('k', { chunkBytes: 96 * 1024 });
    const ct: Buffer[] = [];
    const done = pipeline(enc, collect(ct));
    const buf = Buffer.alloc(100 * 1024);
    for (const b of blocks) {
      b.copy(buf);
      await writeAndWait(enc, buf.subarray(0, b.length));
      buf.fill(0xee); // reused, as soon as it may be
    }
    enc.end();
    await done;
    const pt: Buffer[] = [];
    await pipeline(Readable.from([Buffer.concat(ct)]), env.client.decryptStream(), collect(pt));
    expect(sha(Buffer.concat(pt))).toBe(sha(Buffer.concat(blocks)));
  });

  it('decryptStream: a valid ciphertext written from one reused buffer decrypts', async () => {
    const plain = randomBytes(600 * 1024);
    const ct: Buffer[] = [];
    await pipeline(Readable.from([plain]), env.client.encryptStream('k'), collect(ct));
    const all = Buffer.concat(ct);
    const dec = env.client.decryptStream();
    const out: Buffer[] = [];
    const done = pipeline(dec, collect(out));
    const buf = Buffer.alloc(64 * 1024);
    for (let at = 0; at < all.length; at += buf.length) {
      const n = all.copy(buf, 0, at, at + buf.length);
      await writeAndWait(dec, buf.subarray(0, n));
      buf.fill(0xee);
    }
    dec.end();
    await done;
    expect(Buffer.concat(out).equals(plain)).toBe(true);
  });
});

describe('session operations take their input at the call', () => {
  it('a plaintext wiped right after session.encrypt is encrypted as it was, as client.encrypt does', async () => {
    const s = env.client.session();
    const secret = Buffer.from('card 4111');
    const aad = Buffer.from('order 7');
    const p = s.encrypt('k', secret, { associatedData: aad });
    secret.fill(0);
    aad.fill(0);
    const { ciphertext } = await p;
    await s.close();
    const { plaintext } = await env.client.decrypt(ciphertext, { associatedData: Buffer.from('order 7') });
    expect(Buffer.from(plaintext).toString()).toBe('card 4111');
  });
});
