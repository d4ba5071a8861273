/**
 * Typed loaders for the known-answer test vectors in this directory.
 * Provenance of every file (repository/package, path, commit or version, licence, subsets): ./README.md.
 *
 * Everything is parsed strictly: malformed hex, missing fields, length fields that disagree with the
 * data, or a test count that differs from the file's own count throw instead of silently yielding
 * fewer or wrong vectors. Results are cached per file; the returned arrays and Buffers are shared,
 * so callers must not mutate them.
 */
import { readFileSync } from 'node:fs';

export type WycheproofResult = 'valid' | 'invalid' | 'acceptable';

export interface AeadVector {
  source: string;
  tcId: number;
  comment: string;
  flags: string[];
  key: Buffer;
  iv: Buffer;
  aad: Buffer;
  msg: Buffer;
  ct: Buffer;
  tag: Buffer;
  result: WycheproofResult;
  tagSizeBits: number;
  ivSizeBits: number;
  keySizeBits: number;
}

export interface MacVector {
  source: string;
  tcId: number;
  comment: string;
  flags: string[];
  key: Buffer;
  msg: Buffer;
  tag: Buffer;
  result: WycheproofResult;
  tagSizeBits: number;
  keySizeBits: number;
}

export interface HashVector {
  source: string;
  id: string;
  msg: Buffer;
  md: Buffer;
}

interface HmacKnownAnswer {
  source: string;
  id: string;
  alg: 'sha256' | 'sha384' | 'sha512';
  key: Buffer;
  msg: Buffer;
  /** The expected MAC; when `truncatedBits` is set, only the first truncatedBits/8 bytes of the HMAC. */
  mac: Buffer;
  truncatedBits?: number;
}

// ---------------------------------------------------------------------------------------------
// helpers

const cache = new Map<string, unknown>();

function cached<T>(key: string, load: () => T): T {
  if (cache.has(key)) return cache.get(key) as T;
  const value = load();
  cache.set(key, value);
  return value;
}

/** Reads a file of this directory (`rel` like 'wycheproof/aes_gcm_test.json'), resolved relative to this module. */
function readVectorFile(rel: string): string {
  return readFileSync(new URL(`./${rel}`, import.meta.url), 'utf8');
}

function fail(where: string, what: string): never {
  throw new Error(`test vectors ${where}: ${what}`);
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** Strict hex decoding (Buffer.from(s, 'hex') silently stops at the first bad digit). */
function hex(value: unknown, where: string, field: string): Buffer {
  if (typeof value !== 'string' || !HEX.test(value)) fail(where, `${field} is not an even-length hex string`);
  return Buffer.from(value, 'hex');
}

function int(value: unknown, where: string, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail(where, `${field} is not a non-negative integer`);
  return value;
}

function str(value: unknown, where: string, field: string): string {
  if (typeof value !== 'string') fail(where, `${field} is not a string`);
  return value;
}

function strings(value: unknown, where: string, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((x): x is string => typeof x === 'string')) fail(where, `${field} is not a string array`);
  return [...value];
}

function obj(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(where, 'expected an object');
  return value as Record<string, unknown>;
}

function arr(value: unknown, where: string, field: string): unknown[] {
  if (!Array.isArray(value)) fail(where, `${field} is not an array`);
  return value;
}

function result(value: unknown, where: string): WycheproofResult {
  if (value === 'valid' || value === 'invalid' || value === 'acceptable') return value;
  fail(where, `unknown result ${JSON.stringify(value)}`);
}

// ---------------------------------------------------------------------------------------------
// Wycheproof (C2SP/wycheproof testvectors_v1)

interface WycheproofGroup {
  group: Record<string, unknown>;
  tests: Record<string, unknown>[];
}

function wycheproofGroups(rel: string, expectedType: string): WycheproofGroup[] {
  const doc = obj(JSON.parse(readVectorFile(rel)) as unknown, rel);
  const declared = int(doc['numberOfTests'], rel, 'numberOfTests');
  const groups = arr(doc['testGroups'], rel, 'testGroups').map((g, i) => {
    const group = obj(g, `${rel} testGroups[${i}]`);
    if (group['type'] !== expectedType) fail(rel, `testGroups[${i}].type is ${JSON.stringify(group['type'])}, expected ${expectedType}`);
    const tests = arr(group['tests'], rel, `testGroups[${i}].tests`).map((t, j) => obj(t, `${rel} testGroups[${i}].tests[${j}]`));
    return { group, tests };
  });
  const count = groups.reduce((n, g) => n + g.tests.length, 0);
  if (count !== declared) fail(rel, `has ${count} tests but numberOfTests says ${declared}`);
  return groups;
}

/** Wycheproof AEAD vectors (all of them, including IV sizes other than 96 bits and 'invalid' ones). */
export function wycheproofAead(name: 'aes_gcm' | 'chacha20_poly1305'): AeadVector[] {
  const rel = `wycheproof/${name}_test.json`;
  return cached(rel, () =>
    wycheproofGroups(rel, 'AeadTest').flatMap(({ group, tests }) => {
      const keySizeBits = int(group['keySize'], rel, 'keySize');
      const ivSizeBits = int(group['ivSize'], rel, 'ivSize');
      const tagSizeBits = int(group['tagSize'], rel, 'tagSize');
      return tests.map((t): AeadVector => {
        const tcId = int(t['tcId'], rel, 'tcId');
        const where = `${rel} tcId ${tcId}`;
        const v: AeadVector = {
          source: rel,
          tcId,
          comment: str(t['comment'], where, 'comment'),
          flags: strings(t['flags'], where, 'flags'),
          key: hex(t['key'], where, 'key'),
          iv: hex(t['iv'], where, 'iv'),
          aad: hex(t['aad'], where, 'aad'),
          msg: hex(t['msg'], where, 'msg'),
          ct: hex(t['ct'], where, 'ct'),
          tag: hex(t['tag'], where, 'tag'),
          result: result(t['result'], where),
          tagSizeBits,
          ivSizeBits,
          keySizeBits,
        };
        if (v.key.length * 8 !== keySizeBits) fail(where, `key is ${v.key.length} bytes, group keySize ${keySizeBits}`);
        if (v.iv.length * 8 !== ivSizeBits) fail(where, `iv is ${v.iv.length} bytes, group ivSize ${ivSizeBits}`);
        // Invalid vectors may carry a wrong-length tag/ct on purpose; valid ones must be consistent.
        if (v.result !== 'invalid' && v.tag.length * 8 !== tagSizeBits) fail(where, `tag is ${v.tag.length} bytes, group tagSize ${tagSizeBits}`);
        if (v.result !== 'invalid' && v.ct.length !== v.msg.length) fail(where, 'ct and msg lengths differ');
        return v;
      });
    }),
  );
}

/** Wycheproof MAC vectors. `tag` is the expected MAC truncated to tagSizeBits (the full HMAC or a prefix). */
export function wycheproofMac(name: 'hmac_sha256' | 'hmac_sha384' | 'hmac_sha512'): MacVector[] {
  const rel = `wycheproof/${name}_test.json`;
  return cached(rel, () =>
    wycheproofGroups(rel, 'MacTest').flatMap(({ group, tests }) => {
      const keySizeBits = int(group['keySize'], rel, 'keySize');
      const tagSizeBits = int(group['tagSize'], rel, 'tagSize');
      return tests.map((t): MacVector => {
        const tcId = int(t['tcId'], rel, 'tcId');
        const where = `${rel} tcId ${tcId}`;
        const v: MacVector = {
          source: rel,
          tcId,
          comment: str(t['comment'], where, 'comment'),
          flags: strings(t['flags'], where, 'flags'),
          key: hex(t['key'], where, 'key'),
          msg: hex(t['msg'], where, 'msg'),
          tag: hex(t['tag'], where, 'tag'),
          result: result(t['result'], where),
          tagSizeBits,
          keySizeBits,
        };
        if (v.key.length * 8 !== keySizeBits) fail(where, `key is ${v.key.length} bytes, group keySize ${keySizeBits}`);
        if (v.result !== 'invalid' && v.tag.length * 8 !== tagSizeBits) fail(where, `tag is ${v.tag.length} bytes, group tagSize ${tagSizeBits}`);
        return v;
      });
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// "KEY = value" record files: NIST CAVP .rsp (CRLF), cryptography_vectors' RFC 4231 and BLAKE2 .txt

interface TextRecord {
  /** 1-based line number of the record's first line. */
  line: number;
  fields: Map<string, string>;
}

/** Blank-line separated blocks of `Key = value` lines; '#' comments and '[L = n]' headers are skipped. */
function textRecords(rel: string): TextRecord[] {
  const records: TextRecord[] = [];
  let current: TextRecord | undefined;
  readVectorFile(rel)
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.trim();
      if (line === '') {
        current = undefined;
        return;
      }
      if (line.startsWith('#') || line.startsWith('[')) return;
      const m = /^([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
      if (!m) fail(`${rel}:${i + 1}`, `cannot parse ${JSON.stringify(line.slice(0, 40))}`);
      const [, key = '', value = ''] = m;
      if (!current) {
        current = { line: i + 1, fields: new Map() };
        records.push(current);
      }
      if (current.fields.has(key)) fail(`${rel}:${i + 1}`, `duplicate field ${key}`);
      current.fields.set(key, value);
    });
  return records;
}

function field(r: TextRecord, rel: string, key: string): string {
  const v = r.fields.get(key);
  if (v === undefined) fail(`${rel}:${r.line}`, `record lacks ${key}`);
  return v;
}

/** `Len` (bits) / `Msg` / `MD` records; CAVP writes the empty message as `Len = 0` with `Msg = 00`. */
function lenMsgMdFile(rel: string, mdBytes: number): HashVector[] {
  return textRecords(rel).map((r) => {
    const where = `${rel}:${r.line}`;
    const lenText = field(r, rel, 'Len');
    if (!/^\d+$/.test(lenText)) fail(where, `bad Len ${lenText}`);
    const bits = Number(lenText);
    if (bits % 8 !== 0) fail(where, `Len ${bits} is not whole bytes`);
    let msg = hex(field(r, rel, 'Msg'), where, 'Msg');
    if (bits === 0) {
      if (!msg.equals(Buffer.from([0]))) fail(where, 'Len = 0 record whose Msg is not 00');
      msg = Buffer.alloc(0);
    }
    if (msg.length * 8 !== bits) fail(where, `Msg is ${msg.length} bytes but Len = ${bits}`);
    const md = hex(field(r, rel, 'MD'), where, 'MD');
    if (md.length !== mdBytes) fail(where, `MD is ${md.length} bytes, expected ${mdBytes}`);
    return { source: rel, id: `Len=${bits}`, msg, md };
  });
}

const NIST_FILES = {
  sha256: { prefix: 'SHA256', mdBytes: 32 },
  sha384: { prefix: 'SHA384', mdBytes: 48 },
  sha512: { prefix: 'SHA512', mdBytes: 64 },
  'sha3-256': { prefix: 'SHA3_256', mdBytes: 32 },
  'sha3-512': { prefix: 'SHA3_512', mdBytes: 64 },
} as const;

/** NIST CAVP byte-oriented ShortMsg + LongMsg records (some LongMsg files are subsets, see README). */
export function nistHash(alg: 'sha256' | 'sha384' | 'sha512' | 'sha3-256' | 'sha3-512'): HashVector[] {
  const { prefix, mdBytes } = NIST_FILES[alg];
  return cached(`nist:${alg}`, () => [
    ...lenMsgMdFile(`nist/${prefix}ShortMsg.rsp`, mdBytes),
    ...lenMsgMdFile(`nist/${prefix}LongMsg.rsp`, mdBytes),
  ]);
}

function generatedBlake2b(rel: string, bits: number): HashVector[] {
  const doc = obj(JSON.parse(readVectorFile(rel)) as unknown, rel);
  if (doc['digestSizeBits'] !== bits || doc['keyed'] !== false) fail(rel, 'unexpected digestSizeBits/keyed');
  const vectors = arr(doc['vectors'], rel, 'vectors').map((x, i) => {
    const t = obj(x, `${rel} vectors[${i}]`);
    const len = int(t['len'], rel, `vectors[${i}].len`);
    const where = `${rel} len ${len}`;
    const msg = hex(t['msg'], where, 'msg');
    const md = hex(t['md'], where, 'md');
    if (msg.length !== len) fail(where, `msg is ${msg.length} bytes`);
    if (md.length * 8 !== bits) fail(where, `md is ${md.length} bytes`);
    return { source: rel, id: `len=${len}`, msg, md };
  });
  if (vectors.length !== int(doc['numberOfTests'], rel, 'numberOfTests')) fail(rel, 'vector count differs from numberOfTests');
  return vectors;
}

/**
 * Unkeyed BLAKE2b with a 32-byte (kernel 'blake2b-256') or 64-byte ('blake2b-512') digest.
 * 512: the published cryptography_vectors blake2b.txt records (incl. RFC 7693's "abc") + the generated set;
 * 256: the generated set only (no published unkeyed BLAKE2b-256 file was found); see README.
 */
export function blake2bVectors(bits: 256 | 512): HashVector[] {
  return cached(`blake2b:${bits}`, () => [
    ...(bits === 512 ? lenMsgMdFile('blake2b/blake2b.txt', 64) : []),
    ...generatedBlake2b(`blake2b/blake2b-${bits}-generated.json`, bits),
  ]);
}

const RFC4231_CASES = [1, 2, 3, 4, 6, 7] as const; // test case 5 (truncation) is not in these files
const HASH_NAMES = { 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' } as const;

/** RFC 4231 HMAC-SHA-256/384/512 test cases 1-7 (case 5 with a 128-bit truncated MAC). */
export function hmacRfc4231(): { source: string; id: string; alg: 'sha256' | 'sha384' | 'sha512'; key: Buffer; msg: Buffer; mac: Buffer; truncatedBits?: number }[] {
  return cached('rfc4231', (): HmacKnownAnswer[] => {
    const out: HmacKnownAnswer[] = [];
    for (const alg of ['sha256', 'sha384', 'sha512'] as const) {
      const rel = `rfc4231/rfc-4231-${alg}.txt`;
      const records = textRecords(rel);
      if (records.length !== RFC4231_CASES.length) fail(rel, `has ${records.length} records, expected ${RFC4231_CASES.length}`);
      records.forEach((r, i) => {
        const where = `${rel}:${r.line}`;
        const msg = hex(field(r, rel, 'Msg'), where, 'Msg');
        if (Number(field(r, rel, 'Len')) !== msg.length * 8) fail(where, 'Len disagrees with Msg');
        const mac = hex(field(r, rel, 'MD'), where, 'MD');
        out.push({ source: rel, id: `Test Case ${RFC4231_CASES[i] ?? '?'}`, alg, key: hex(field(r, rel, 'Key'), where, 'Key'), msg, mac });
      });
    }
    const rel = 'rfc4231/rfc-4231-case5-truncated.txt';
    for (const r of textRecords(rel)) {
      const where = `${rel}:${r.line}`;
      const hashName = field(r, rel, 'Hash');
      const alg = (HASH_NAMES as Record<string, 'sha256' | 'sha384' | 'sha512' | undefined>)[hashName];
      if (!alg) fail(where, `unknown Hash ${hashName}`);
      const msg = hex(field(r, rel, 'Msg'), where, 'Msg');
      if (Number(field(r, rel, 'Len')) !== msg.length * 8) fail(where, 'Len disagrees with Msg');
      const truncatedBits = Number(field(r, rel, 'Truncated'));
      const mac = hex(field(r, rel, 'MD'), where, 'MD');
      if (mac.length * 8 !== truncatedBits) fail(where, 'MD length disagrees with Truncated');
      out.push({ source: rel, id: 'Test Case 5', alg, key: hex(field(r, rel, 'Key'), where, 'Key'), msg, mac, truncatedBits });
    }
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// NIST CAVP AES-CCM (CAVS 11.0, 256-bit keys): DVPT, VADT, VNT, VPT, VTT .rsp files

export type CcmFile = 'DVPT256' | 'VADT256' | 'VNT256' | 'VPT256' | 'VTT256';

interface CcmCommon {
  source: string;
  /** The file's `Count`, 0..n-1 across the whole file. */
  count: number;
  key: Buffer;
  nonce: Buffer;
  aad: Buffer;
  /** The ciphertext without the tag (CAVP's `CT` is ciphertext || tag). */
  ct: Buffer;
  tag: Buffer;
}

/**
 * One CAVP CCM record. `pass` vectors (all of VADT/VNT/VPT/VTT, and DVPT's `Result = Pass`) carry the
 * payload: ct || tag must decrypt to it and the payload must encrypt to ct || tag. `fail` vectors
 * (DVPT's `Result = Fail`) have no payload: decryption-verification must reject them.
 */
export type CcmVector = CcmCommon & ({ result: 'pass'; payload: Buffer } | { result: 'fail'; payload?: undefined });

/** Records per file, as published (DVPT256: 80 Pass + 160 Fail). A different count throws. */
const CCM_RECORDS: Record<CcmFile, number> = { DVPT256: 240, VADT256: 330, VNT256: 70, VPT256: 250, VTT256: 70 };
const CCM_PARAMS = ['Alen', 'Plen', 'Nlen', 'Tlen'] as const;
const CCM_RECORD_FIELDS = new Set(['Count', 'Key', 'Nonce', 'Adata', 'Payload', 'CT', 'Result']);

/**
 * Parses a CAVP CCM response file. Its layout: file-level `Xlen = n` parameters, `[Xlen = n, ...]`
 * section headers holding the others, section-level `Key` (and `Nonce`), then `Count = i` records.
 * Every record must resolve all four lengths exactly once and match them; `Adata`/`Payload` of
 * length 0 are written `00` (as in the SHA files) and become empty.
 */
function nistCcmFile(name: CcmFile): CcmVector[] {
  const rel = `nist/ccm/${name}.rsp`;
  const isDvpt = name === 'DVPT256';
  const fileParams = new Map<string, number>();
  let sectionParams: Map<string, number> | undefined;
  let sectionFields = new Map<string, string>();
  let record: { line: number; fields: Map<string, string>; params: Map<string, number>; section: Map<string, string> } | undefined;
  const raw: NonNullable<typeof record>[] = [];
  const text = readVectorFile(rel);
  if (!/^#\s+AES Keylen: 256\s*$/m.test(text)) fail(rel, 'not a 256-bit-key file');
  text.split(/\r?\n/).forEach((rawLine, i) => {
    const where = `${rel}:${i + 1}`;
    const line = rawLine.trim();
    if (line === '') {
      record = undefined;
      return;
    }
    if (line.startsWith('#')) return;
    if (line.startsWith('[')) {
      const m = /^\[(.*)\]$/.exec(line);
      if (!m) fail(where, `bad section header ${JSON.stringify(line)}`);
      sectionParams = new Map();
      for (const part of (m[1] ?? '').split(',')) {
        const p = /^\s*([A-Za-z]+)\s*=\s*(\d+)\s*$/.exec(part);
        if (!p || !(CCM_PARAMS as readonly string[]).includes(p[1] ?? '')) fail(where, `bad section parameter ${JSON.stringify(part)}`);
        if (sectionParams.has(p[1] ?? '') || fileParams.has(p[1] ?? '')) fail(where, `${p[1]} given twice`);
        sectionParams.set(p[1] ?? '', Number(p[2]));
      }
      sectionFields = new Map();
      record = undefined;
      return;
    }
    const m = /^([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) fail(where, `cannot parse ${JSON.stringify(line.slice(0, 40))}`);
    const [, key = '', value = ''] = m;
    if (key === 'Count') {
      if (!sectionParams) fail(where, 'record before any section header');
      record = { line: i + 1, fields: new Map([[key, value]]), params: sectionParams, section: sectionFields };
      raw.push(record);
      return;
    }
    if (record) {
      if (!CCM_RECORD_FIELDS.has(key)) fail(where, `unknown field ${key}`);
      if (record.fields.has(key) || record.section.has(key)) fail(where, `duplicate field ${key}`);
      record.fields.set(key, value);
    } else if (!sectionParams) {
      if (!(CCM_PARAMS as readonly string[]).includes(key) || !/^\d+$/.test(value)) fail(where, `bad file parameter ${key}`);
      if (fileParams.has(key)) fail(where, `${key} given twice`);
      fileParams.set(key, Number(value));
    } else {
      if (key !== 'Key' && key !== 'Nonce') fail(where, `unexpected section field ${key}`);
      if (sectionFields.has(key)) fail(where, `duplicate section field ${key}`);
      sectionFields.set(key, value);
    }
  });
  if (raw.length !== CCM_RECORDS[name]) fail(rel, `has ${raw.length} records, expected ${CCM_RECORDS[name]}`);
  return raw.map((r, index): CcmVector => {
    const where = `${rel}:${r.line}`;
    const get = (k: string): string => {
      const v = r.fields.get(k) ?? r.section.get(k);
      if (v === undefined) fail(where, `record lacks ${k}`);
      return v;
    };
    const len = (k: (typeof CCM_PARAMS)[number]): number => {
      const v = r.params.get(k) ?? fileParams.get(k);
      if (v === undefined) fail(where, `no ${k} for this record`);
      return v;
    };
    const count = Number(get('Count'));
    if (!/^\d+$/.test(get('Count')) || count !== index) fail(where, `Count ${get('Count')} out of sequence (expected ${index})`);
    const [alen, plen, nlen, tlen] = CCM_PARAMS.map(len) as [number, number, number, number];
    const key = hex(get('Key'), where, 'Key');
    if (key.length !== 32) fail(where, `Key is ${key.length} bytes`);
    const nonce = hex(get('Nonce'), where, 'Nonce');
    if (nonce.length !== nlen) fail(where, `Nonce is ${nonce.length} bytes but Nlen = ${nlen}`);
    const zeroAsEmpty = (k: string, n: number): Buffer => {
      const b = hex(get(k), where, k);
      if (n === 0) {
        if (!b.equals(Buffer.from([0]))) fail(where, `${k} of length 0 is not written 00`);
        return Buffer.alloc(0);
      }
      if (b.length !== n) fail(where, `${k} is ${b.length} bytes, expected ${n}`);
      return b;
    };
    const aad = zeroAsEmpty('Adata', alen);
    const sealed = hex(get('CT'), where, 'CT');
    if (sealed.length !== plen + tlen) fail(where, `CT is ${sealed.length} bytes, expected Plen + Tlen = ${plen + tlen}`);
    const common: CcmCommon = { source: rel, count, key, nonce, aad, ct: sealed.subarray(0, plen), tag: sealed.subarray(plen) };
    const res = r.fields.get('Result');
    if (!isDvpt && res !== undefined) fail(where, 'Result in an encryption file');
    if (isDvpt && res !== 'Pass' && res !== 'Fail') fail(where, `Result is ${JSON.stringify(res)}`);
    if (res === 'Fail') {
      if (r.fields.has('Payload')) fail(where, 'a Fail record with a Payload');
      return { ...common, result: 'fail' };
    }
    return { ...common, result: 'pass', payload: zeroAsEmpty('Payload', plen) };
  });
}

/** NIST CAVP AES-256-CCM records of one file, or of all five (960) in DVPT, VADT, VNT, VPT, VTT order. */
export function nistCcm(name?: CcmFile): CcmVector[] {
  if (name) return cached(`ccm:${name}`, () => nistCcmFile(name));
  return (Object.keys(CCM_RECORDS) as CcmFile[]).flatMap((n) => nistCcm(n));
}

// ---------------------------------------------------------------------------------------------
// RFC 3686 AES-256-CTR (cryptography_vectors' ciphers/AES/CTR/aes-256-ctr.txt)

export interface CtrVector {
  source: string;
  id: string;
  key: Buffer;
  /** The whole 16-byte initial counter block (RFC 3686: nonce(4) || IV(8) || block counter 00000001). */
  iv: Buffer;
  plaintext: Buffer;
  ciphertext: Buffer;
}

const RFC3686_RECORDS = 3; // RFC 3686 section 6, test vectors #7, #8 and #9 (the 256-bit-key ones)
const CTR_FIELDS = ['COUNT', 'KEY', 'IV', 'PLAINTEXT', 'CIPHERTEXT'];

/** RFC 3686 AES-256-CTR known answers: encryption of PLAINTEXT from counter block IV gives CIPHERTEXT. */
export function aes256Ctr(): CtrVector[] {
  const rel = 'rfc3686/aes-256-ctr.txt';
  return cached(rel, () => {
    const records = textRecords(rel);
    if (records.length !== RFC3686_RECORDS) fail(rel, `has ${records.length} records, expected ${RFC3686_RECORDS}`);
    return records.map((r, i): CtrVector => {
      const where = `${rel}:${r.line}`;
      const extra = [...r.fields.keys()].filter((k) => !CTR_FIELDS.includes(k));
      if (extra.length > 0) fail(where, `unknown field(s) ${extra.join(', ')}`);
      if (field(r, rel, 'COUNT') !== String(i)) fail(where, `COUNT ${field(r, rel, 'COUNT')} out of sequence (expected ${i})`);
      const v: CtrVector = {
        source: rel,
        id: `COUNT=${i}`,
        key: hex(field(r, rel, 'KEY'), where, 'KEY'),
        iv: hex(field(r, rel, 'IV'), where, 'IV'),
        plaintext: hex(field(r, rel, 'PLAINTEXT'), where, 'PLAINTEXT'),
        ciphertext: hex(field(r, rel, 'CIPHERTEXT'), where, 'CIPHERTEXT'),
      };
      if (v.key.length !== 32) fail(where, `KEY is ${v.key.length} bytes`);
      if (v.iv.length !== 16) fail(where, `IV is ${v.iv.length} bytes`);
      if (v.plaintext.length === 0 || v.plaintext.length !== v.ciphertext.length) fail(where, 'PLAINTEXT and CIPHERTEXT lengths differ (or are 0)');
      return v;
    });
  });
}
