// Host tests for the vector loader: every vector family is cross-checked against node:crypto (OpenSSL),
// an implementation independent of the kernel code the vectors are meant for, and the counts are pinned.
import { createCipheriv, createDecipheriv, createHash, createHmac, getCiphers, getHashes, type CipherGCMTypes, type DecipherCCM, type DecipherChaCha20Poly1305, type DecipherGCM } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { aes256Ctr, blake2bVectors, hmacRfc4231, nistCcm, nistHash, wycheproofAead, wycheproofMac, type AeadVector, type CcmVector, type MacVector } from './load.js';

const file = (rel: string): string => readFileSync(new URL(`./${rel}`, import.meta.url), 'utf8');
const declaredTests = (rel: string): number => (JSON.parse(file(rel)) as { numberOfTests: number }).numberOfTests;
const countResults = (vs: readonly { result: string }[]): Record<string, number> =>
  vs.reduce<Record<string, number>>((acc, v) => ({ ...acc, [v.result]: (acc[v.result] ?? 0) + 1 }), {});

type Opened = { ok: true; pt: Buffer } | { ok: false; error: string };

/**
 * One AEAD vector against node:crypto: one that must fail (`valid` undefined) is refused; the others
 * open to their plaintext and seal to their ciphertext and tag.
 */
function expectNodeAgrees(id: string, opened: Opened, valid: { plaintext: Buffer; seal: () => Buffer; sealed: Buffer } | undefined): void {
  if (!valid) {
    expect(opened.ok, `${id}: must-fail vector accepted`).toBe(false);
  } else {
    expect(opened.ok && opened.pt.equals(valid.plaintext), `${id}: decrypt`).toBe(true);
    expect(valid.seal().equals(valid.sealed), `${id}: encrypt`).toBe(true);
  }
}

/** What node:crypto's decipher makes of a ciphertext and tag (made by `make`), or why it refuses them. */
function openWith(make: () => DecipherGCM | DecipherCCM | DecipherChaCha20Poly1305, tag: Buffer, aad: Buffer, ct: Buffer): Opened {
  try {
    const d = make();
    d.setAuthTag(tag);
    d.setAAD(aad, { plaintextLength: ct.length });
    return { ok: true, pt: Buffer.concat([d.update(ct), d.final()]) };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

function nodeOpen(v: AeadVector): Opened {
  const make = () =>
    v.source.includes('aes_gcm')
      ? createDecipheriv(`aes-${v.keySizeBits}-gcm` as CipherGCMTypes, v.key, v.iv, { authTagLength: v.tagSizeBits / 8 })
      : createDecipheriv('chacha20-poly1305', v.key, v.iv, { authTagLength: v.tagSizeBits / 8 });
  return openWith(make, v.tag, v.aad, v.ct);
}

function nodeSeal(v: AeadVector): Buffer {
  const c =
    v.source.includes('aes_gcm')
      ? createCipheriv(`aes-${v.keySizeBits}-gcm` as CipherGCMTypes, v.key, v.iv, { authTagLength: v.tagSizeBits / 8 })
      : createCipheriv('chacha20-poly1305', v.key, v.iv, { authTagLength: v.tagSizeBits / 8 });
  c.setAAD(v.aad, { plaintextLength: v.msg.length });
  const ct = Buffer.concat([c.update(v.msg), c.final()]);
  return Buffer.concat([ct, c.getAuthTag()]);
}

describe('Wycheproof AEAD', () => {
  it('node:crypto provides the ciphers', () => {
    const ciphers = getCiphers();
    for (const c of ['aes-128-gcm', 'aes-192-gcm', 'aes-256-gcm', 'chacha20-poly1305']) expect(ciphers).toContain(c);
  });

  it('aes_gcm: counts, and node:crypto agrees on every 96-bit-IV vector', () => {
    const vs = wycheproofAead('aes_gcm');
    expect(vs.length).toBe(declaredTests('wycheproof/aes_gcm_test.json'));
    expect(vs.length).toBe(316);
    expect(countResults(vs)).toEqual({ valid: 229, invalid: 87 });
    expect(new Set(vs.map((v) => v.tcId)).size).toBe(vs.length);
    expect(new Set(vs.map((v) => v.keySizeBits))).toEqual(new Set([128, 192, 256]));
    expect(new Set(vs.map((v) => v.tagSizeBits))).toEqual(new Set([128]));

    const iv12 = vs.filter((v) => v.iv.length === 12);
    expect(countResults(iv12)).toEqual({ valid: 116, invalid: 81 });
    for (const v of iv12) {
      const id = `tcId ${v.tcId} (${v.comment})`;
      expectNodeAgrees(id, nodeOpen(v), v.result === 'invalid' ? undefined : { plaintext: v.msg, seal: () => nodeSeal(v), sealed: Buffer.concat([v.ct, v.tag]) });
    }
  });

  it('aes_gcm: other IV sizes also agree with node:crypto where it takes the IV', () => {
    const others = wycheproofAead('aes_gcm').filter((v) => v.iv.length !== 12);
    const refused: number[] = [];
    for (const v of others) {
      const id = `tcId ${v.tcId} (iv ${v.iv.length} bytes)`;
      const opened = nodeOpen(v);
      if (v.result === 'invalid') {
        expect(opened.ok, `${id}: invalid vector accepted`).toBe(false);
      } else if (!opened.ok && /initialization vector/i.test(opened.error)) {
        refused.push(v.tcId); // OpenSSL 3 caps GCM IVs at 256 bytes
      } else {
        expect(opened.ok && opened.pt.equals(v.msg), `${id}: decrypt`).toBe(true);
      }
    }
    // Only the zero-length-IV vectors are invalid; only the 257-byte IVs are beyond node's limit.
    expect(others.filter((v) => v.result === 'invalid').every((v) => v.iv.length === 0 && v.flags.includes('ZeroLengthIv'))).toBe(true);
    expect(refused.every((tc) => others.find((v) => v.tcId === tc)?.iv.length === 257)).toBe(true);
  });

  it('chacha20_poly1305: counts, and node:crypto agrees on every 96-bit-nonce vector', () => {
    const vs = wycheproofAead('chacha20_poly1305');
    expect(vs.length).toBe(declaredTests('wycheproof/chacha20_poly1305_test.json'));
    expect(vs.length).toBe(325);
    expect(countResults(vs)).toEqual({ valid: 256, invalid: 69 });
    expect(new Set(vs.map((v) => v.keySizeBits))).toEqual(new Set([256]));
    expect(new Set(vs.map((v) => v.tagSizeBits))).toEqual(new Set([128]));

    const iv12 = vs.filter((v) => v.iv.length === 12);
    expect(countResults(iv12)).toEqual({ valid: 256, invalid: 60 });
    for (const v of iv12) {
      const id = `tcId ${v.tcId} (${v.comment})`;
      expectNodeAgrees(id, nodeOpen(v), v.result === 'invalid' ? undefined : { plaintext: v.msg, seal: () => nodeSeal(v), sealed: Buffer.concat([v.ct, v.tag]) });
    }
    // The rest are the InvalidNonceSize vectors (empty msg/ct/tag).
    const others = vs.filter((v) => v.iv.length !== 12);
    expect(others).toHaveLength(9);
    for (const v of others) {
      expect(v.result).toBe('invalid');
      expect(v.flags).toEqual(['InvalidNonceSize']);
    }
  });
});

describe('Wycheproof HMAC', () => {
  it.each([
    ['hmac_sha256', 'sha256', [256, 128, 520], [256, 128]],
    ['hmac_sha384', 'sha384', [384, 192, 520], [384, 192]],
    ['hmac_sha512', 'sha512', [512, 256, 520], [512, 256]],
  ] as const)('%s: counts, and node:crypto HMAC truncated to tagSize matches iff valid', (name, hash, keySizes, tagSizes) => {
    const vs: MacVector[] = wycheproofMac(name);
    expect(vs.length).toBe(declaredTests(`wycheproof/${name}_test.json`));
    expect(vs.length).toBe(174);
    expect(countResults(vs)).toEqual({ valid: 66, invalid: 108 });
    expect(new Set(vs.map((v) => v.keySizeBits))).toEqual(new Set(keySizes));
    expect(new Set(vs.map((v) => v.tagSizeBits))).toEqual(new Set(tagSizes));
    for (const v of vs) {
      const mac = createHmac(hash, v.key).update(v.msg).digest().subarray(0, v.tagSizeBits / 8);
      expect(mac.equals(v.tag), `tcId ${v.tcId} (${v.comment}) ${v.result}`).toBe(v.result === 'valid');
    }
  });
});

describe('RFC 4231 HMAC', () => {
  it('all seven test cases for each hash match node:crypto', () => {
    const vs = hmacRfc4231();
    expect(vs).toHaveLength(21);
    for (const alg of ['sha256', 'sha384', 'sha512'] as const) {
      const ids = vs.filter((v) => v.alg === alg).map((v) => v.id).sort();
      expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7].map((n) => `Test Case ${n}`));
    }
    for (const v of vs) {
      const full = createHmac(v.alg, v.key).update(v.msg).digest();
      const want = v.truncatedBits === undefined ? full : full.subarray(0, v.truncatedBits / 8);
      expect(want.toString('hex'), `${v.source} ${v.id}`).toBe(v.mac.toString('hex'));
      if (v.id === 'Test Case 6' || v.id === 'Test Case 7') expect(v.key).toHaveLength(131);
      if (v.id === 'Test Case 5') expect(v.truncatedBits).toBe(128);
    }
  });
});

describe('NIST CAVP SHA-2 / SHA-3', () => {
  const lenRecords = (rel: string): number => (file(rel).match(/^Len = /gm) ?? []).length;
  it.each([
    ['sha256', 'SHA256', 65 + 64],
    ['sha384', 'SHA384', 129 + 32],
    ['sha512', 'SHA512', 129 + 32],
    ['sha3-256', 'SHA3_256', 137 + 25],
    ['sha3-512', 'SHA3_512', 73 + 100],
  ] as const)('%s: every record matches node:crypto createHash', (alg, prefix, expected) => {
    const vs = nistHash(alg);
    expect(vs.length).toBe(lenRecords(`nist/${prefix}ShortMsg.rsp`) + lenRecords(`nist/${prefix}LongMsg.rsp`));
    expect(vs.length).toBe(expected);
    const empty = vs.filter((v) => v.msg.length === 0);
    expect(empty, 'the Len = 0 record (Msg = 00) is the empty message').toHaveLength(1);
    for (const v of vs) expect(createHash(alg).update(v.msg).digest('hex'), `${v.source} ${v.id}`).toBe(v.md.toString('hex'));
  });
});

// A minimal BLAKE2b written from RFC 7693 (sections 2-3), independent of CPython, OpenSSL and Linux:
// node:crypto has no BLAKE2b-256 (only blake2b512, and OpenSSL 3.0 refuses other output lengths).
const B2B_IV = [
  0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
  0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n,
];
const B2B_SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];

function blake2bRef(msg: Buffer, outBytes: number): Buffer {
  const h = BigUint64Array.from(B2B_IV);
  h[0] = (h[0] ?? 0n) ^ BigInt(0x01010000 | outBytes); // no key
  const v = new BigUint64Array(16);
  const m = new BigUint64Array(16);
  const at = (a: BigUint64Array, i: number): bigint => a[i] ?? 0n;
  const rotr = (x: bigint, n: bigint): bigint => (x >> n) | (x << (64n - n));
  const g = (a: number, b: number, c: number, d: number, x: bigint, y: bigint): void => {
    v[a] = at(v, a) + at(v, b) + x;
    v[d] = rotr(at(v, d) ^ at(v, a), 32n);
    v[c] = at(v, c) + at(v, d);
    v[b] = rotr(at(v, b) ^ at(v, c), 24n);
    v[a] = at(v, a) + at(v, b) + y;
    v[d] = rotr(at(v, d) ^ at(v, a), 16n);
    v[c] = at(v, c) + at(v, d);
    v[b] = rotr(at(v, b) ^ at(v, c), 63n);
  };
  const compress = (block: Buffer, t: bigint, last: boolean): void => {
    for (let i = 0; i < 16; i++) m[i] = block.readBigUInt64LE(i * 8);
    for (let i = 0; i < 8; i++) {
      v[i] = at(h, i);
      v[i + 8] = B2B_IV[i] ?? 0n;
    }
    v[12] = at(v, 12) ^ t;
    v[13] = at(v, 13) ^ (t >> 64n);
    if (last) v[14] = ~at(v, 14);
    for (let r = 0; r < 12; r++) {
      const s = B2B_SIGMA[r % 10] ?? [];
      const x = (i: number): bigint => at(m, s[i] ?? 0);
      g(0, 4, 8, 12, x(0), x(1));
      g(1, 5, 9, 13, x(2), x(3));
      g(2, 6, 10, 14, x(4), x(5));
      g(3, 7, 11, 15, x(6), x(7));
      g(0, 5, 10, 15, x(8), x(9));
      g(1, 6, 11, 12, x(10), x(11));
      g(2, 7, 8, 13, x(12), x(13));
      g(3, 4, 9, 14, x(14), x(15));
    }
    for (let i = 0; i < 8; i++) h[i] = at(h, i) ^ at(v, i) ^ at(v, i + 8);
  };
  let off = 0;
  while (msg.length - off > 128) {
    compress(msg.subarray(off, off + 128), BigInt(off + 128), false);
    off += 128;
  }
  const lastBlock = Buffer.alloc(128);
  msg.copy(lastBlock, 0, off);
  compress(lastBlock, BigInt(msg.length), true);
  const out = Buffer.alloc(64);
  for (let i = 0; i < 8; i++) out.writeBigUInt64LE(at(h, i), i * 8);
  return out.subarray(0, outBytes);
}

describe('BLAKE2b', () => {
  it('blake2b-512: published + generated vectors match node:crypto blake2b512', () => {
    expect(getHashes()).toContain('blake2b512');
    const vs = blake2bVectors(512);
    expect(vs.filter((v) => v.source === 'blake2b/blake2b.txt')).toHaveLength(7);
    expect(vs).toHaveLength(7 + 304);
    // RFC 7693 Appendix A: BLAKE2b-512("abc")
    const abc = vs.find((v) => v.msg.toString('latin1') === 'abc');
    expect(abc?.md.toString('hex')).toBe(
      'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923',
    );
    for (const v of vs) {
      expect(createHash('blake2b512').update(v.msg).digest('hex'), `${v.source} ${v.id}`).toBe(v.md.toString('hex'));
      expect(blake2bRef(v.msg, 64).toString('hex'), `${v.source} ${v.id} (RFC 7693 reference)`).toBe(v.md.toString('hex'));
    }
  });

  it('blake2b-256: generated vectors are well-formed and match an RFC 7693 reference implementation', () => {
    const vs = blake2bVectors(256);
    expect(vs).toHaveLength(304);
    expect(vs.map((v) => v.msg.length)).toEqual([...Array.from({ length: 301 }, (_, i) => i), 1000, 4096, 65537]);
    for (const v of vs) {
      expect(v.md).toHaveLength(32);
      expect(v.msg.equals(Buffer.from(Array.from({ length: v.msg.length }, (_, i) => i % 251)))).toBe(true);
    }
    // Well-known BLAKE2b-256 of the empty message.
    expect(vs[0]?.md.toString('hex')).toBe('0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8');
    for (const v of vs) expect(blake2bRef(v.msg, 32).toString('hex'), `${v.source} ${v.id}`).toBe(v.md.toString('hex'));
    // BLAKE2b-256 is not a truncated BLAKE2b-512 (the digest length is a parameter of the hash).
    const b512 = new Map(blake2bVectors(512).map((v) => [v.msg.toString('hex'), v.md.toString('hex')]));
    for (const v of vs) expect(b512.get(v.msg.toString('hex'))?.startsWith(v.md.toString('hex'))).toBe(false);
  });
});

function nodeCcmOpen(v: CcmVector): Opened {
  return openWith(() => createDecipheriv('aes-256-ccm', v.key, v.nonce, { authTagLength: v.tag.length }), v.tag, v.aad, v.ct);
}

function nodeCcmSeal(v: CcmVector & { result: 'pass' }): Buffer {
  const c = createCipheriv('aes-256-ccm', v.key, v.nonce, { authTagLength: v.tag.length });
  c.setAAD(v.aad, { plaintextLength: v.payload.length });
  const ct = Buffer.concat([c.update(v.payload), c.final()]);
  return Buffer.concat([ct, c.getAuthTag()]);
}

describe('NIST CAVP AES-256-CCM', () => {
  const counted = (rel: string): number => (file(rel).match(/^Count = /gm) ?? []).length;

  it.each([
    ['DVPT256', 240, { pass: 80, fail: 160 }],
    ['VADT256', 330, { pass: 330 }],
    ['VNT256', 70, { pass: 70 }],
    ['VPT256', 250, { pass: 250 }],
    ['VTT256', 70, { pass: 70 }],
  ] as const)('%s: counts, and node:crypto aes-256-ccm agrees on every record', (name, expected, results) => {
    const vs = nistCcm(name);
    expect(vs.length).toBe(counted(`nist/ccm/${name}.rsp`));
    expect(vs.length).toBe(expected);
    expect(countResults(vs)).toEqual(results);
    for (const v of vs) {
      const id = `${v.source} Count ${v.count} (nonce ${v.nonce.length}, tag ${v.tag.length}, aad ${v.aad.length}, ct ${v.ct.length})`;
      expectNodeAgrees(id, nodeCcmOpen(v), v.result === 'fail' ? undefined : { plaintext: v.payload, seal: () => nodeCcmSeal(v), sealed: Buffer.concat([v.ct, v.tag]) });
    }
  });

  it('covers every nonce and tag length CCM allows, and ringfence’s 12-byte nonce with a 16-byte tag', () => {
    const vs = nistCcm();
    expect(vs).toHaveLength(960);
    const sizes = (f: (v: CcmVector) => number): number[] => [...new Set(vs.map(f))].sort((a, b) => a - b);
    expect(sizes((v) => v.nonce.length)).toEqual([7, 8, 9, 10, 11, 12, 13]);
    expect(sizes((v) => v.tag.length)).toEqual([4, 6, 8, 10, 12, 14, 16]);
    expect(sizes((v) => v.aad.length)).toEqual([...Array(33).keys()]);
    expect(sizes((v) => v.ct.length)).toEqual([...Array(25).keys()]);
    // The aes-256-ccm suite's own shape (VNT256 [Nlen = 12]): 10 records.
    expect(vs.filter((v) => v.nonce.length === 12 && v.tag.length === 16)).toHaveLength(10);
    expect(vs.every((v) => v.key.length === 32)).toBe(true);
  });
});

describe('RFC 3686 AES-256-CTR', () => {
  it('3 vectors; node:crypto aes-256-ctr from the given counter block agrees both ways', () => {
    expect(getCiphers()).toContain('aes-256-ctr');
    const vs = aes256Ctr();
    expect(vs).toHaveLength((file('rfc3686/aes-256-ctr.txt').match(/^COUNT = /gm) ?? []).length);
    expect(vs.map((v) => v.plaintext.length)).toEqual([16, 32, 36]);
    for (const v of vs) {
      // RFC 3686 counter blocks: nonce(4) || IV(8) || block counter 1.
      expect(v.iv.subarray(12).toString('hex'), v.id).toBe('00000001');
      const c = createCipheriv('aes-256-ctr', v.key, v.iv);
      expect(Buffer.concat([c.update(v.plaintext), c.final()]).toString('hex'), `${v.id}: encrypt`).toBe(v.ciphertext.toString('hex'));
      const d = createDecipheriv('aes-256-ctr', v.key, v.iv);
      expect(Buffer.concat([d.update(v.ciphertext), d.final()]).toString('hex'), `${v.id}: decrypt`).toBe(v.plaintext.toString('hex'));
    }
    // RFC 3686 section 6, test vector #7 (the first 256-bit one): "Single block msg".
    expect(vs[0]?.plaintext.toString('latin1')).toBe('Single block msg');
    expect(vs[0]?.ciphertext.toString('hex')).toBe('145ad01dbf824ec7560863dc71e3e0c0');
  });
});
