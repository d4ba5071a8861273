// The loader's strictness for the CCM and CTR files: each real file, altered in one way, must make
// the loader throw rather than yield fewer or different vectors. node:fs is mocked so that the
// loader reads the altered text in place of the file; every case reloads the module (it caches).
import { readFileSync as realReadFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';

const altered = vi.hoisted(() => new Map<string, string>());

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const readFileSync = ((p: Parameters<typeof fs.readFileSync>[0], ...rest: unknown[]) => {
    const name = p instanceof URL ? p.pathname : String(p);
    for (const [suffix, text] of altered) if (name.endsWith(suffix)) return text;
    return (fs.readFileSync as (...a: unknown[]) => unknown)(p, ...rest);
  }) as typeof fs.readFileSync;
  return { ...fs, readFileSync, default: { ...fs, readFileSync } };
});

const original = (rel: string): string => realReadFileSync(new URL(`./${rel}`, import.meta.url), 'utf8');

/** Loads with `rel` replaced by `edit(original)`; the edit must change something. */
async function loadAltered<T>(rel: string, edit: (text: string) => string, load: (m: typeof import('./load.js')) => T): Promise<T> {
  const text = original(rel);
  const changed = edit(text);
  expect(changed, 'the alteration changed nothing').not.toBe(text);
  altered.set(rel, changed);
  vi.resetModules();
  return load(await import('./load.js'));
}

afterEach(() => altered.clear());

const once = (from: string | RegExp, to: string) => (t: string): string => t.replace(from, to);

describe('nistCcm strictness', () => {
  it('loads the unaltered files (the mock passes them through)', async () => {
    vi.resetModules();
    const { nistCcm } = await import('./load.js');
    expect(nistCcm()).toHaveLength(960);
  });

  it.each([
    ['bad hex in CT', 'DVPT256', once('CT = 469c90bb', 'CT = 469c90bg'), /CT is not an even-length hex string/],
    ['odd-length hex in Adata', 'VNT256', once(/Adata = a355d4c6/, 'Adata = a355d4c'), /Adata is not an even-length hex string/],
    ['a record without Adata', 'DVPT256', once(/Adata = 00\r\n/, ''), /record lacks Adata/],
    ['a Pass record without Payload', 'DVPT256', once(/Result = Pass\r\nPayload = 00\r\n/, 'Result = Pass\r\n'), /record lacks Payload/],
    ['a section without Key', 'VTT256', once(/Key = 9074b1ae[0-9a-f]*\r\n/, ''), /record lacks Key/],
    ['a record missing (count)', 'VPT256', (t: string) => t.replace(/\r\nCount = 249\r\n[^]*$/, '\r\n'), /has 249 records, expected 250/],
    ['a record added (count)', 'VTT256', (t: string) => `${t}\r\nCount = 70\r\nAdata = 00\r\nPayload = 00\r\nCT = 00\r\n`, /has 71 records, expected 70/],
    ['a Count out of sequence', 'VADT256', once('Count = 1\r\n', 'Count = 7\r\n'), /Count 7 out of sequence \(expected 1\)/],
    ['a CT one byte short', 'VNT256', once(/(CT = [0-9a-f]*)[0-9a-f]{2}\r\n/, '$1\r\n'), /CT is 39 bytes, expected Plen \+ Tlen = 40/],
    ['a nonce that contradicts Nlen', 'VNT256', once('Nonce = aaa23f101647d8', 'Nonce = aaa23f101647d800'), /Nonce is 8 bytes but Nlen = 7/],
    ['a zero-length Adata not written 00', 'DVPT256', once('Adata = 00', 'Adata = 01'), /Adata of length 0 is not written 00/],
    ['an unknown Result', 'DVPT256', once('Result = Fail', 'Result = Maybe'), /Result is "Maybe"/],
    ['a Fail record with a Payload', 'DVPT256', once('Result = Fail\r\n', 'Result = Fail\r\nPayload = 00\r\n'), /a Fail record with a Payload/],
    ['a Result in an encryption file', 'VTT256', once(/(Count = 0\r\n)/, '$1Result = Pass\r\n'), /Result in an encryption file/],
    ['an unknown field', 'VADT256', once(/(Count = 0\r\n)/, '$1Tag = 00\r\n'), /unknown field Tag/],
    ['a duplicated length parameter', 'VNT256', once('[Nlen = 7]', '[Nlen = 7, Tlen = 16]'), /Tlen given twice/],
    ['a 128-bit-key file', 'VTT256', once('AES Keylen: 256', 'AES Keylen: 128'), /not a 256-bit-key file/],
  ] as const)('throws on %s (%s)', async (_what, name, edit, message) => {
    await expect(loadAltered(`nist/ccm/${name}.rsp`, edit, (m) => m.nistCcm(name))).rejects.toThrow(message);
  });
});

describe('aes256Ctr strictness', () => {
  const rel = 'rfc3686/aes-256-ctr.txt';
  it.each([
    ['bad hex in KEY', once('KEY = 776BEFF2', 'KEY = 776BEFFZ'), /KEY is not an even-length hex string/],
    ['a record without CIPHERTEXT', once(/CIPHERTEXT = 145A[0-9A-F]*\n/, ''), /record lacks CIPHERTEXT/],
    ['a fourth record (count)', (t: string) => `${t}\nCOUNT = 3\nKEY = 00\nIV = 00\nPLAINTEXT = 00\nCIPHERTEXT = 00\n`, /has 4 records, expected 3/],
    ['a COUNT out of sequence', once('COUNT = 1', 'COUNT = 5'), /COUNT 5 out of sequence \(expected 1\)/],
    ['CIPHERTEXT shorter than PLAINTEXT', once(/(CIPHERTEXT = 145A[0-9A-F]*)[0-9A-F]{2}\n/, '$1\n'), /PLAINTEXT and CIPHERTEXT lengths differ/],
    ['a 15-byte IV', once('IV = 00000060DB5672C97AA8F0B200000001', 'IV = 00000060DB5672C97AA8F0B2000000'), /IV is 15 bytes/],
    ['an unknown field', once('COUNT = 0\n', 'COUNT = 0\nTAG = 00\n'), /unknown field\(s\) TAG/],
  ] as const)('throws on %s', async (_what, edit, message) => {
    await expect(loadAltered(rel, edit, (m) => m.aes256Ctr())).rejects.toThrow(message);
  });
});
