import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { associatedData, decodeEnvelope, encodeEnvelope, encodeHeader, HEADER_BYTES, MalformedCiphertextError } from './envelope.js';

const header = () => encodeHeader({ suite: 'aes-256-ccm', keyId: Buffer.alloc(16, 0xab), keyVersion: 7, nonce: Buffer.alloc(12, 0xcd) });

describe('ciphertext envelope', () => {
  it('has the documented fixed layout', () => {
    const h = header();
    expect(h.length).toBe(36);
    expect(h.toString('hex')).toBe(`5246` + `01` + `03` + 'ab'.repeat(16) + '00000007' + 'cd'.repeat(12));
  });

  it('round-trips through the binary form', () => {
    const sealed = randomBytes(40);
    const e = decodeEnvelope(encodeEnvelope(header(), sealed));
    expect(e).toMatchObject({ suite: 'aes-256-ccm', keyVersion: 7 });
    expect(e.keyId.equals(Buffer.alloc(16, 0xab))).toBe(true);
    expect(e.nonce.equals(Buffer.alloc(12, 0xcd))).toBe(true);
    expect(e.sealed.equals(sealed)).toBe(true);
    expect(associatedData(e.header, Buffer.from('ctx')).equals(Buffer.concat([header(), Buffer.from('ctx')]))).toBe(true);
  });

  it('refuses hostile input with a reason and without echoing bytes', () => {
    const good = encodeEnvelope(header(), randomBytes(16));
    const cases: [Buffer, RegExp][] = [
      [Buffer.alloc(0), /shorter than the 36-byte header/],
      [good.subarray(0, HEADER_BYTES + 15), /truncated/],
      [Buffer.concat([Buffer.from('XX'), good.subarray(2)]), /bad magic/],
      [Buffer.from(good).fill(9, 2, 3), /format version 9/],
      [Buffer.from(good).fill(0, 3, 4), /unknown suite id 0/],
      [Buffer.from(good).fill(0, 20, 24), /key version 0/],
    ];
    for (const [data, reason] of cases) {
      const err = (() => {
        try {
          decodeEnvelope(data);
        } catch (e) {
          return e as Error;
        }
        throw new Error('accepted');
      })();
      expect(err).toBeInstanceOf(MalformedCiphertextError);
      expect(err.message).toMatch(reason);
      expect(err.message).not.toContain(data.toString('hex').slice(8, 40) || 'never');
    }
  });

  it('decodes every random buffer without crashing: it parses or refuses', () => {
    for (let i = 0; i < 5000; i++) {
      const data = randomBytes(Math.floor(Math.random() * 80));
      if (i % 2) data.write('RF\x01', 0, 'latin1');
      try {
        decodeEnvelope(data);
      } catch (e) {
        expect(e).toBeInstanceOf(MalformedCiphertextError);
      }
    }
  });
});
