import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeEnvelope, encodeHeader } from './envelope.js';
import {
  CHUNK_PREFIX_BYTES,
  chunkAad,
  decodeStreamHeader,
  encodeStreamHeader,
  STREAM_HEADER_BYTES,
  StreamDecryptor,
  StreamEncryptor,
  StreamFormatError,
  type DecryptedChunk,
  type StreamHeader,
} from './stream-format.js';

const KEY = randomBytes(32);
const KEY_ID = Buffer.alloc(16, 0xab);
const AAD = Buffer.from('tenant=42');
const MAX = 16; // small chunks: many chunk boundaries in small streams

class AuthFailed extends Error {}

/** As the kernel engine's seal: headroom bytes of scratch (here junk, which the encryptor must overwrite), then ciphertext || tag. */
const seal = async (nonce: Buffer, aad: Buffer, plaintext: Buffer, headroom: number): Promise<Buffer> => {
  const c = createCipheriv('aes-256-gcm', KEY, nonce);
  c.setAAD(aad);
  return Buffer.concat([Buffer.alloc(headroom, 0xee), c.update(plaintext), c.final(), c.getAuthTag()]);
};
const open = async (_h: StreamHeader, nonce: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> => {
  const d = createDecipheriv('aes-256-gcm', KEY, nonce);
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
  } catch {
    throw new AuthFailed('authentication failed');
  }
};

const newHeader = (over: Partial<Parameters<typeof encodeStreamHeader>[0]> = {}) =>
  encodeStreamHeader({ suite: 'aes-256-gcm', keyId: KEY_ID, keyVersion: 3, streamId: randomBytes(16), ...over });
const encryptor = (header: Buffer = newHeader(), aad: Buffer = AAD, max = MAX) => new StreamEncryptor({ header, callerAad: aad, maxChunkBytes: max, seal, nonce: () => randomBytes(12) });
const decryptor = (aad: Buffer = AAD, max = MAX) => new StreamDecryptor({ callerAad: aad, maxChunkBytes: max, open });

/** Encrypts in pieces of `max` bytes; the last piece final, or (viaFinish) an empty final chunk from finish(). */
async function encrypt(pt: Buffer, o: { header?: Buffer; aad?: Buffer; max?: number; viaFinish?: boolean } = {}) {
  const max = o.max ?? MAX;
  const enc = encryptor(o.header, o.aad, max);
  const chunks: Buffer[] = [];
  const pieces: Buffer[] = [];
  for (let i = 0; i < pt.length; i += max) pieces.push(pt.subarray(i, i + max));
  if (!o.viaFinish && pieces.length === 0) pieces.push(Buffer.alloc(0));
  for (const [i, p] of pieces.entries()) chunks.push((await enc.push(p, !o.viaFinish && i === pieces.length - 1))!);
  if (o.viaFinish) chunks.push((await enc.finish())!);
  return { header: enc.headerBytes(), chunks, all: Buffer.concat([enc.headerBytes(), ...chunks]), enc };
}

async function decrypt(slices: Buffer[], dec = decryptor()) {
  const out: DecryptedChunk[] = [];
  for (const s of slices) out.push(...(await dec.push(s)));
  dec.end();
  return { out, plaintext: Buffer.concat(out.map((c) => c.plaintext)) };
}

const kindOf = async (p: Promise<unknown>) => {
  const e = await p.then(() => undefined, (err: unknown) => err);
  if (e instanceof StreamFormatError) return e.kind;
  if (e instanceof AuthFailed) return 'auth';
  throw new Error(`expected a failure, got ${String(e)}`);
};

describe('stream header', () => {
  it('has the documented fixed layout and round-trips', () => {
    const h = encodeStreamHeader({ suite: 'aes-256-ctr-hmac-sha256', keyId: KEY_ID, keyVersion: 7, streamId: Buffer.alloc(16, 0xcd) });
    expect(h.length).toBe(STREAM_HEADER_BYTES);
    expect(h.toString('hex')).toBe('5246' + '02' + '04' + 'ab'.repeat(16) + '00000007' + 'cd'.repeat(16));
    const d = decodeStreamHeader(Buffer.concat([h, Buffer.from('chunk bytes follow')]));
    expect(d).toMatchObject({ suite: 'aes-256-ctr-hmac-sha256', suiteId: 4, keyVersion: 7 });
    expect(d.keyId.equals(KEY_ID) && d.streamId.equals(Buffer.alloc(16, 0xcd)) && d.bytes.equals(h)).toBe(true);
  });

  it('refuses hostile headers with distinguishable kinds', () => {
    const good = newHeader();
    const unary = encodeEnvelope(encodeHeader({ suite: 'aes-256-gcm', keyId: KEY_ID, keyVersion: 1, nonce: randomBytes(12) }), randomBytes(16));
    const cases: [Buffer, string, RegExp][] = [
      [good.subarray(0, 39), 'malformed', /shorter than the 40-byte/],
      [Buffer.concat([Buffer.from('XX'), good.subarray(2)]), 'malformed', /bad magic/],
      [unary, 'malformed', /format 1.*use Decrypt/],
      [Buffer.from(good).fill(0, 3, 4), 'malformed', /unknown suite id 0/],
      [Buffer.from(good).fill(5, 3, 4), 'malformed', /unknown suite id 5/],
      [Buffer.from(good).fill(0, 20, 24), 'malformed', /key version 0/],
      [Buffer.from(good).fill(3, 2, 3), 'unsupported', /format version 3/],
      [Buffer.from(good).fill(0, 2, 3), 'malformed', /there is no ciphertext format 0/],
    ];
    for (const [buf, kind, reason] of cases) {
      expect(() => decodeStreamHeader(buf)).toThrow(StreamFormatError);
      expect(() => decodeStreamHeader(buf)).toThrow(expect.objectContaining({ kind, message: expect.stringMatching(reason) }));
    }
    expect(() => decodeStreamHeader(Buffer.from(good).fill(9, 2, 3))).toThrow(expect.objectContaining({ kind: 'unsupported', formatVersion: 9 }));
  });

  it('decodes every random buffer without crashing: it parses or refuses', () => {
    for (let i = 0; i < 5000; i++) {
      const buf = randomBytes(Math.floor(Math.random() * 48));
      if (i % 2) buf.write('RF\x02', 0, 'latin1');
      try {
        decodeStreamHeader(buf);
      } catch (e) {
        expect(e).toBeInstanceOf(StreamFormatError);
      }
    }
  });
});

describe('StreamEncryptor', () => {
  it('writes the documented chunk layout and seals with header || index || flags || caller AAD', async () => {
    const seen: { nonce: Buffer; aad: Buffer }[] = [];
    const nonces = [Buffer.alloc(12, 1), Buffer.alloc(12, 2)];
    const header = newHeader();
    const enc = new StreamEncryptor({ header, callerAad: AAD, maxChunkBytes: MAX, nonce: () => nonces.shift()!, seal: (nonce, aad, pt, headroom) => (seen.push({ nonce, aad }), seal(nonce, aad, pt, headroom)) });
    const c0 = (await enc.push(Buffer.from('hello'), false))!;
    const c1 = (await enc.push(Buffer.from('!'), true))!;
    expect(c0.subarray(0, CHUNK_PREFIX_BYTES).toString('hex')).toBe('00' + '00000015' + '01'.repeat(12)); // 5 + 16 sealed bytes
    expect(c1.subarray(0, CHUNK_PREFIX_BYTES).toString('hex')).toBe('01' + '00000011' + '02'.repeat(12));
    expect(c0.length).toBe(CHUNK_PREFIX_BYTES + 21);
    expect(seen[0]!.aad.toString('hex')).toBe(header.toString('hex') + '0000000000000000' + '00' + AAD.toString('hex'));
    expect(seen[1]!.aad.equals(chunkAad(header, 1, 1, AAD))).toBe(true);
    expect(seen[1]!.aad.toString('hex')).toBe(header.toString('hex') + '0000000000000001' + '01' + AAD.toString('hex'));
    expect(enc.chunksSealed).toBe(2);
  });

  it('ignores empty non-final pieces, refuses anything after the final chunk, and counts one seal per chunk', async () => {
    const enc = encryptor();
    expect(await enc.push(Buffer.alloc(0), false)).toBeUndefined();
    expect(enc.chunksSealed).toBe(0);
    const c0 = (await enc.push(Buffer.from('abc'), false))!;
    expect(await enc.push(Buffer.alloc(0), false)).toBeUndefined();
    const c1 = (await enc.finish())!; // no final chunk was sent: an empty one
    expect(c1[0]).toBe(1);
    expect(c1.length).toBe(CHUNK_PREFIX_BYTES + 16);
    expect(enc.chunksSealed).toBe(2);
    expect(await enc.finish()).toBeUndefined();
    await expect(enc.push(Buffer.from('x'), false)).rejects.toMatchObject({ kind: 'protocol' });
    await expect(enc.push(Buffer.alloc(0), true)).rejects.toMatchObject({ kind: 'protocol' });
    const { out, plaintext } = await decrypt([Buffer.concat([enc.headerBytes(), c0, c1])]);
    expect(out.map((c) => [c.index, c.final])).toEqual([[0, false], [1, true]]); // indices stay dense
    expect(plaintext.toString()).toBe('abc');
  });

  it('refuses oversize pieces, overlapping calls and bad nonces', async () => {
    const enc = encryptor();
    await expect(enc.push(randomBytes(MAX + 1), false)).rejects.toThrow(RangeError);
    const first = enc.push(Buffer.from('a'), false);
    await expect(enc.push(Buffer.from('b'), false)).rejects.toThrow(/pending/);
    await first;
    const bad = new StreamEncryptor({ header: newHeader(), callerAad: AAD, maxChunkBytes: MAX, seal, nonce: () => randomBytes(8) });
    await expect(bad.push(Buffer.from('a'), true)).rejects.toThrow(/nonce must be 12/);
    expect(() => encryptor(Buffer.alloc(40))).toThrow(StreamFormatError);
  });
});

describe('StreamDecryptor round trips', () => {
  for (const size of [0, 1, MAX, MAX * 7 + 5]) {
    for (const viaFinish of [false, true]) {
      it(`${size} bytes, final chunk ${viaFinish ? 'from finish()' : 'with the data'}`, async () => {
        const pt = randomBytes(size);
        const s = await encrypt(pt, { viaFinish });
        const chunks = Math.max(1, Math.ceil(size / MAX)) + (viaFinish && size > 0 ? 1 : 0);
        expect(s.chunks.length).toBe(chunks);
        expect(s.enc.chunksSealed).toBe(chunks);
        const { out, plaintext } = await decrypt([s.all]);
        expect(plaintext.equals(pt)).toBe(true);
        expect(out.map((c) => c.index)).toEqual([...Array(chunks).keys()]);
        expect(out.map((c) => c.final)).toEqual([...Array(chunks).keys()].map((i) => i === chunks - 1));
      });
    }
  }

  it('reassembles a small stream sliced at every offset, and byte by byte', async () => {
    const pt = randomBytes(MAX * 2 + 7);
    const { all } = await encrypt(pt);
    for (let cut = 0; cut <= all.length; cut++) {
      expect((await decrypt([all.subarray(0, cut), all.subarray(cut)])).plaintext.equals(pt)).toBe(true);
    }
    const bytes = [...all].map((b) => Buffer.from([b]));
    expect((await decrypt(bytes)).plaintext.equals(pt)).toBe(true);
  });

  it('reassembles a large stream sliced at random, holding at most one unfinished chunk', async () => {
    const max = 4096;
    const pt = randomBytes(300_000);
    const { all } = await encrypt(pt, { max });
    for (let round = 0; round < 5; round++) {
      const dec = decryptor(AAD, max);
      const got: Buffer[] = [];
      for (let off = 0; off < all.length; ) {
        const n = 1 + Math.floor(Math.random() * 3 * max);
        for (const c of await dec.push(all.subarray(off, off + n))) got.push(c.plaintext);
        off += n;
        expect(dec.bufferedBytes).toBeLessThan(CHUNK_PREFIX_BYTES + max + 16);
      }
      dec.end();
      expect(Buffer.concat(got).equals(pt)).toBe(true);
    }
  });

  it('reassembles chunks of 1 MiB from 256 KiB messages (large pieces held as views) and 17-byte ones (copied)', async () => {
    const max = 1024 * 1024;
    const pt = randomBytes(2 * max + 12345);
    const { all } = await encrypt(pt, { max });
    for (const slice of [256 * 1024, 100_003, 17]) {
      const dec = decryptor(AAD, max);
      const got: Buffer[] = [];
      for (let off = 0; off < all.length; off += slice) {
        // Each message in a buffer of its own, as grpc-js delivers them; overwritten once pushed
        // when small, so a piece that was not copied would corrupt the chunk and fail its tag.
        const message = Buffer.from(all.subarray(off, off + slice));
        for (const c of await dec.push(message)) got.push(c.plaintext);
        if (message.length < 64 * 1024) message.fill(0);
      }
      dec.end();
      expect(Buffer.concat(got).equals(pt), `slice ${slice}`).toBe(true);
    }
  });

  it('awaits onHeader with the parsed header before opening any chunk; its error aborts the stream', async () => {
    const { all, header } = await encrypt(randomBytes(40));
    const events: string[] = [];
    const dec = new StreamDecryptor({
      callerAad: AAD,
      maxChunkBytes: MAX,
      onHeader: async (h) => {
        await new Promise((r) => setTimeout(r, 5));
        events.push(`header v${h.keyVersion} ${h.bytes.equals(header)}`);
      },
      open: (...a) => (events.push('open'), open(...a)),
    });
    await decrypt([all], dec);
    expect(events).toEqual(['header v3 true', 'open', 'open', 'open']);
    const refusing = new StreamDecryptor({ callerAad: AAD, maxChunkBytes: MAX, onHeader: () => Promise.reject(new Error('key not found')), open: () => Promise.reject(new Error('opened')) });
    await expect(refusing.push(all)).rejects.toThrow('key not found');
    expect(refusing.header).toBeUndefined();
  });
});

describe('StreamDecryptor refusals', () => {
  const threeChunks = () => encrypt(randomBytes(MAX * 2 + 3)); // chunks 0, 1, 2 (final)
  const join = (header: Buffer, chunks: Buffer[]) => Buffer.concat([header, ...chunks]);

  it('reports truncation: no input, partial header, no final chunk, a dropped last chunk, a partial chunk', async () => {
    const { header, chunks, all } = await threeChunks();
    const noFinal = encryptor(header);
    const nonFinal = [(await noFinal.push(randomBytes(5), false))!, (await noFinal.push(randomBytes(5), false))!];
    const cases: [Buffer, RegExp, number][] = [
      [Buffer.alloc(0), /no stream header/, 0],
      [header.subarray(0, 20), /inside its header/, 0],
      [header, /after 0 chunks/, 0],
      [join(header, nonFinal), /after 2 chunks without its final chunk/, 2],
      [join(header, chunks.slice(0, 2)), /after 2 chunks/, 2],
      [all.subarray(0, all.length - 1), /inside chunk 2/, 2],
      [all.subarray(0, all.length - chunks[2]!.length + 3), /inside chunk 2/, 2],
    ];
    for (const [bytes, detail, received] of cases) {
      const err = await decrypt([bytes]).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StreamFormatError);
      expect(err).toMatchObject({ kind: 'truncated', chunksReceived: received });
      expect((err as Error).message).toMatch(detail);
    }
  });

  it('fails authentication for dropped, swapped, duplicated, spliced or re-flagged chunks, and for changed header or AAD', async () => {
    const { header, chunks } = await threeChunks();
    const [c0, c1, c2] = chunks as [Buffer, Buffer, Buffer];
    const other = await encrypt(randomBytes(MAX * 2 + 3), { header: newHeader({ streamId: randomBytes(16) }) }); // same key
    const flip = (c: Buffer) => Buffer.concat([Buffer.from([c[0]! ^ 1]), c.subarray(1)]);
    const cases: Buffer[] = [
      join(header, [c0, c2]), // dropped middle chunk
      join(header, [c1, c0, c2]),
      join(header, [c0, c0, c1, c2]),
      join(header, [c0, other.chunks[1]!, c2]),
      join(header, [flip(c0), c1, c2]), // a middle chunk claims to be final
      join(header, [c0, c1, flip(c2)]), // the final chunk claims not to be
      join(Buffer.from(header).fill(Buffer.from([0, 0, 0, 4]), 20, 24), chunks), // key version 3 -> 4 only
      join(Buffer.from(header).fill(7, 24), chunks), // stream id only
      join(Buffer.from(header).fill(0x11, 4, 20), chunks), // key id only
    ];
    for (const bytes of cases) expect(await kindOf(decrypt([bytes]))).toBe('auth');
    expect(await kindOf(decrypt([join(header, chunks)], decryptor(Buffer.from('tenant=43'))))).toBe('auth');
    expect(await kindOf(decrypt([join(header, chunks)], decryptor(Buffer.alloc(0))))).toBe('auth');
  });

  it('returns plaintext only for authenticated chunks', async () => {
    const { header, chunks } = await threeChunks();
    const bad = Buffer.from(chunks[1]!);
    bad[bad.length - 1]! ^= 0x80;
    const dec = decryptor();
    expect(await dec.push(header)).toEqual([]);
    expect((await dec.push(chunks[0]!)).map((c) => c.index)).toEqual([0]);
    expect(await dec.push(bad.subarray(0, bad.length - 1))).toEqual([]); // incomplete: nothing yet
    await expect(dec.push(bad.subarray(bad.length - 1))).rejects.toThrow(AuthFailed);
    await expect(dec.push(chunks[2]!)).rejects.toThrow(AuthFailed); // the failure sticks
    expect(() => dec.end()).toThrow(AuthFailed);
    await expect(decryptor().push(join(header, [chunks[0]!, bad, chunks[2]!]))).rejects.toThrow(AuthFailed);
  });

  it('refuses bytes after the final chunk as a protocol violation', async () => {
    const { all } = await threeChunks();
    expect(await kindOf(decrypt([Buffer.concat([all, Buffer.from([0])])]))).toBe('protocol');
    expect(await kindOf(decrypt([all, Buffer.from([0])]))).toBe('protocol');
    expect(await kindOf(decrypt([all, all]))).toBe('protocol');
    expect((await decrypt([all, Buffer.alloc(0)])).out.length).toBe(3); // an empty message carries no bytes
  });

  it('holds a chunk sent a byte at a time in a few slabs, not a Buffer per byte (found by review: 137x memory)', async () => {
    const max = 200_000;
    const pt = randomBytes(max);
    const ct = (await encrypt(pt, { max })).all;
    const dec = decryptor(AAD, max);
    const cut = STREAM_HEADER_BYTES + CHUNK_PREFIX_BYTES;
    await dec.push(ct.subarray(0, cut));
    const out: Buffer[] = [];
    for (let i = cut; i < ct.length - 1; i++) {
      for (const c of await dec.push(ct.subarray(i, i + 1))) out.push(c.plaintext);
    }
    expect(dec.bufferedBytes).toBe(ct.length - 1 - cut);
    expect(dec.heldBuffers).toBe(Math.ceil((ct.length - 1 - cut) / 65536));
    for (const c of await dec.push(ct.subarray(ct.length - 1))) out.push(c.plaintext);
    dec.end();
    expect(Buffer.concat(out).equals(pt)).toBe(true);
    expect(dec.heldBuffers).toBe(0);
  });

  it('small pieces between large ones do not hold a 64 KiB slab each (found by review: memory doubled)', async () => {
    const max = 1024 * 1024;
    const ct = (await encrypt(randomBytes(max), { max })).all;
    const dec = decryptor(AAD, max);
    let at = STREAM_HEADER_BYTES + CHUNK_PREFIX_BYTES;
    await dec.push(ct.subarray(0, at));
    const pieces: Buffer[] = [];
    for (let i = 0; i < 15; i++) {
      pieces.push(Buffer.from(ct.subarray(at, at + 1)), Buffer.from(ct.subarray(at + 1, at + 1 + 65536)));
      at += 65537;
    }
    for (const p of pieces) expect(await dec.push(p)).toEqual([]);
    // The large pieces are held as views of their own 64 KiB buffers; the 15 single bytes cost bytes
    // (in Node's shared 8 KiB pool), not 15 slabs of 64 KiB (983,040 bytes more).
    expect(dec.heldAllocation).toBeLessThan(15 * 65536 + 16 * 1024);
    expect(dec.bufferedBytes).toBe(15 * 65537);
    const out = await dec.push(ct.subarray(at));
    expect(out.map((c) => c.plaintext.length)).toEqual([max]);
  });

  it('refuses an oversize declared length before buffering the chunk', async () => {
    const header = newHeader();
    const withLen = (flags: number, len: number) => {
      const p = Buffer.alloc(CHUNK_PREFIX_BYTES);
      p[0] = flags;
      p.writeUInt32BE(len, 1);
      return p;
    };
    const dec = decryptor();
    // Authentic streams from a daemon with a larger limit look the same: the message says which limit to raise.
    await expect(dec.push(Buffer.concat([header, withLen(1, MAX + 17), randomBytes(1000)]))).rejects.toMatchObject({
      kind: 'too-large',
      declaredBytes: 17,
      limitBytes: 16,
      message: 'stream chunk too large: chunk 0 declares 17 bytes of plaintext; this daemon takes chunks of at most 16 (maxStreamChunkBytes). A stream encrypted by a daemon with a larger limit decrypts once it is raised to at least 17',
    });
    expect(dec.bufferedBytes).toBe(0);
    const split = decryptor();
    await split.push(Buffer.concat([header, withLen(0, 0xffffffff).subarray(0, 10)]));
    expect(split.bufferedBytes).toBe(10);
    // Longer than any daemon writes (16 MiB): altered, so malformed, not a limit to raise (found by review).
    await expect(split.push(Buffer.concat([withLen(0, 0xffffffff).subarray(10), randomBytes(1000)]))).rejects.toMatchObject({ kind: 'malformed', message: /declares 4294967279 bytes of plaintext, more than any ringfence stream chunk holds \(16777216\)/ });
    await expect(decryptor().push(Buffer.concat([header, withLen(0, 16 * 1024 * 1024 + 17)]))).rejects.toMatchObject({ kind: 'malformed' });
    await expect(decryptor().push(Buffer.concat([header, withLen(0, 16 * 1024 * 1024 + 16)]))).rejects.toMatchObject({ kind: 'too-large', declaredBytes: 16 * 1024 * 1024 });
    expect(split.bufferedBytes).toBe(0);
    const atLimit = decryptor();
    expect(await atLimit.push(Buffer.concat([header, withLen(1, MAX + 16), randomBytes(20)]))).toEqual([]);
    expect(atLimit.bufferedBytes).toBe(20);
    expect(await kindOf(decrypt([Buffer.concat([header, withLen(1, 15), randomBytes(15)])]))).toBe('malformed'); // shorter than the tag
  });

  it('refuses unknown flag bits and a unary ciphertext as malformed, a tag size from the header suite', async () => {
    const { header, chunks } = await threeChunks();
    for (const bit of [2, 4, 0x80]) {
      const c = Buffer.from(chunks[0]!);
      c[0]! |= bit;
      expect(await kindOf(decrypt([join(header, [c, chunks[1]!, chunks[2]!])]))).toBe('malformed');
    }
    const unary = encodeEnvelope(encodeHeader({ suite: 'aes-256-gcm', keyId: KEY_ID, keyVersion: 1, nonce: randomBytes(12) }), randomBytes(40));
    expect(await kindOf(decrypt([unary]))).toBe('malformed');
    // aes-256-ctr-hmac-sha256 has a 32-byte tag: a 16-byte sealed chunk cannot be one of its chunks.
    const ctrHeader = newHeader({ suite: 'aes-256-ctr-hmac-sha256' });
    expect(await kindOf(decrypt([Buffer.concat([ctrHeader, chunks[2]!])]))).toBe('malformed');
  });

  it('property: any single-byte change of a stream ciphertext fails the stream', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: MAX * 5 }), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.nat(), async (pt, pos, xor, sliceSeed) => {
        const { all } = await encrypt(Buffer.from(pt));
        const bad = Buffer.from(all);
        bad[pos % bad.length]! ^= xor;
        const cut = sliceSeed % (bad.length + 1);
        const kind = await kindOf(decrypt([bad.subarray(0, cut), bad.subarray(cut)]));
        expect(['auth', 'malformed', 'unsupported', 'protocol', 'truncated', 'too-large']).toContain(kind);
      }),
      { numRuns: 1000 },
    );
  });
});
