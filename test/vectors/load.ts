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
