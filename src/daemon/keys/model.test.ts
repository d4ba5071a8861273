import { describe, expect, it } from 'vitest';
import { EMPTY_STATE, isValidKeyName, loadedState, nextRotationTime, primaryVersion, validateState, type KeyRecord } from './model.js';

const FILE = '/var/lib/ringfence/state.json';
/** Blob text that must never appear in an error message. */
const SECRET = 'default user:ringfence:master 32 5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7';

function key(over: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id: '0123456789abcdef0123456789abcdef',
    name: 'orders',
    purpose: 'aead',
    suite: 'aes-256-gcm',
    origin: 'generated',
    state: 'enabled',
    minDecryptionVersion: 1,
    rotationPeriodMs: null,
    deletionProtection: false,
    createTime: 1_767_268_800_000,
    rotateTime: null,
    updateTime: 1_767_268_800_000,
    deletionTime: null,
    versions: [{ version: 1, createTime: 1_767_268_800_000, blobs: [SECRET], encryptionsReserved: 0 }],
    ...over,
  };
}

const doc = (...keys: unknown[]) => ({ format: 1, masterCheck: null, keys });

/** The message validateState throws for `d`, checked to name the file and never quote a blob. */
function problem(d: unknown): string {
  let message: string | undefined;
  try {
    validateState(d, FILE);
  } catch (err) {
    message = (err as Error).message;
  }
  if (message === undefined) throw new Error('validateState accepted the document');
  expect(message.startsWith(`${FILE}: `)).toBe(true);
  expect(message).toMatch(/left untouched/);
  expect(message).not.toContain('5ec7e7');
  return message.slice(FILE.length + 2).split(';')[0]!;
}

describe('validateState', () => {
  it('accepts what the daemon writes, returning the same document', () => {
    const d = doc(
      key(),
      key({
        id: 'ffffffffffffffffffffffffffffffff',
        name: 'etm',
        suite: 'aes-256-ctr-hmac-sha256',
        state: 'pending_deletion',
        deletionTime: 1_767_900_000_000,
        rotationPeriodMs: 3_600_000,
        rotateTime: 1_767_300_000_000,
        minDecryptionVersion: 2,
        versions: [
          { version: 1, createTime: 1, blobs: [SECRET, SECRET], encryptionsReserved: 4096 },
          { version: 2, createTime: 2, blobs: [SECRET, SECRET], encryptionsReserved: 0 },
        ],
      }),
      key({ id: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', name: 'mac', purpose: 'mac', suite: 'hmac-sha384', origin: 'imported', state: 'disabled', versions: [{ version: 1, createTime: 1, blobs: ['sealed:aes-256-gcm:AAAA'], encryptionsReserved: 0 }] }),
    );
    expect(validateState(d, FILE)).toBe(d);
    expect(validateState({ format: 1, masterCheck: 'sealed:aes-256-gcm:QUJD', keys: [] }, FILE).masterCheck).toBe('sealed:aes-256-gcm:QUJD');
  });

  it('creatorUid: absent (a state file from before it was recorded) or a uid; anything else is refused', () => {
    const d = doc(key({ creatorUid: 1001 }), key({ id: 'ffffffffffffffffffffffffffffffff', name: 'root', creatorUid: 0 }), key({ id: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', name: 'old' }));
    expect(validateState(d, FILE)).toBe(d);
    for (const bad of [-1, 1.5, 0xffff_ffff, '1001', null]) {
      expect(problem(doc(key({ creatorUid: bad as never })))).toBe('keys[0].creatorUid is not a uid (an integer from 0 to 4294967294)');
    }
  });

  it('a version creatorUid: absent (version 1, or saved before it was recorded) or a uid; anything else is refused', () => {
    const versions = [
      { version: 1, createTime: 1, blobs: [SECRET], encryptionsReserved: 0 },
      { version: 2, createTime: 2, blobs: [SECRET], encryptionsReserved: 0, creatorUid: 1002 },
      { version: 3, createTime: 3, blobs: [SECRET], encryptionsReserved: 0, creatorUid: 0 },
    ];
    const d = doc(key({ creatorUid: 1001, versions }));
    expect(validateState(d, FILE)).toBe(d);
    for (const bad of [-1, 1.5, 0xffff_ffff, '1002', null]) {
      expect(problem(doc(key({ versions: [{ ...versions[0]!, creatorUid: bad as never }] })))).toBe('keys[0].versions[0].creatorUid is not a uid (an integer from 0 to 4294967294)');
    }
  });

  it('rejects malformed documents, naming the problem', () => {
    const cases: [unknown, string][] = [
      [null, 'not a JSON object'],
      [[], 'not a JSON object'],
      ['{}', 'not a JSON object'],
      [{ format: 2, masterCheck: null, keys: [] }, 'unsupported format 2 (this daemon reads format 1)'],
      [{ masterCheck: null, keys: [] }, 'unsupported format undefined (this daemon reads format 1)'],
      [{ format: 1, masterCheck: 5, keys: [] }, 'masterCheck is not a string'],
      [{ format: 1, masterCheck: null, keys: {} }, 'keys is not an array'],
      [doc(null), 'keys[0] is not an object'],
      [doc(key(), 'orders'), 'keys[1] is not an object'],
      [doc(key({ name: '-bad' })), 'keys[0].name is not a valid key name'],
      [doc(key(), key({ id: 'ffffffffffffffffffffffffffffffff' })), 'keys[1].name "orders" is repeated'],
      [doc(key({ id: '0123456789ABCDEF0123456789ABCDEF' })), 'keys[0].id is not 32 lowercase hex digits'],
      [doc(key({ id: '0123' })), 'keys[0].id is not 32 lowercase hex digits'],
      [doc(key(), key({ name: 'other' })), 'keys[1].id is repeated'],
      [doc(key({ purpose: 'sign' as never })), 'keys[0].purpose "sign" is neither "aead" nor "mac"'],
      [doc(key({ suite: 'aes-128-gcm' })), 'keys[0].suite "aes-128-gcm" is not a aead suite'],
      [doc(key({ suite: 'hmac-sha256' })), 'keys[0].suite "hmac-sha256" is not a aead suite'],
      [doc(key({ purpose: 'mac' })), 'keys[0].suite "aes-256-gcm" is not a mac suite'],
      [doc(key({ origin: 'derived' as never })), 'keys[0].origin "derived" is neither "generated" nor "imported"'],
      [doc(key({ state: 'destroyed' as never })), 'keys[0].state "destroyed" is invalid'],
      [doc(key({ deletionProtection: 'yes' as never })), 'keys[0].deletionProtection is not a boolean'],
      [doc(key({ createTime: '2026-01-01' as never })), 'keys[0].createTime is not a time (ms since the epoch, within ±8.64e15)'],
      [doc(key({ updateTime: undefined as never })), 'keys[0].updateTime is not a time (ms since the epoch, within ±8.64e15)'],
      [doc(key({ rotateTime: undefined as never })), 'keys[0].rotateTime is neither null nor a time (ms since the epoch, within ±8.64e15)'],
      [doc(key({ deletionTime: Number.NaN })), 'keys[0].deletionTime is neither null nor a time (ms since the epoch, within ±8.64e15)'],
      [doc(key({ rotationPeriodMs: 0 })), 'keys[0].rotationPeriodMs is neither null nor a positive number up to 100 years'],
      [doc(key({ versions: [] })), 'keys[0].versions is not a non-empty array'],
      [doc(key({ versions: undefined as never })), 'keys[0].versions is not a non-empty array'],
      [doc(key({ versions: [null as never] })), 'keys[0].versions[0] is not an object'],
      [doc(key({ versions: [{ version: 2, createTime: 1, blobs: [SECRET], encryptionsReserved: 0 }] })), 'keys[0].versions[0].version is not 1'],
      [doc(key({ versions: [{ version: 1, createTime: null as never, blobs: [SECRET], encryptionsReserved: 0 }] })), 'keys[0].versions[0].createTime is not a time (ms since the epoch, within ±8.64e15)'],
      [doc(key({ versions: [{ version: 1, createTime: 1, blobs: SECRET as never, encryptionsReserved: 0 }] })), 'keys[0].versions[0].blobs is not an array of non-empty strings'],
      [doc(key({ versions: [{ version: 1, createTime: 1, blobs: [SECRET, 7 as never], encryptionsReserved: 0 }] })), 'keys[0].versions[0].blobs is not an array of non-empty strings'],
      [doc(key({ versions: [{ version: 1, createTime: 1, blobs: [''], encryptionsReserved: 0 }] })), 'keys[0].versions[0].blobs is not an array of non-empty strings'],
      [doc(key({ suite: 'aes-256-ctr-hmac-sha256' })), 'keys[0].versions[0].blobs has 1 entries, but suite aes-256-ctr-hmac-sha256 needs 2'],
      [doc(key({ versions: [{ version: 1, createTime: 1, blobs: [SECRET, SECRET], encryptionsReserved: 0 }] })), 'keys[0].versions[0].blobs has 2 entries, but suite aes-256-gcm needs 1'],
      [doc(key({ versions: [{ version: 1, createTime: 1, blobs: [SECRET], encryptionsReserved: -1 }] })), 'keys[0].versions[0].encryptionsReserved is not a non-negative integer'],
      [doc(key({ versions: [{ version: 1, createTime: 1, blobs: [SECRET], encryptionsReserved: 1.5 }] })), 'keys[0].versions[0].encryptionsReserved is not a non-negative integer'],
      [doc(key({ minDecryptionVersion: 0 })), 'keys[0].minDecryptionVersion 0 is not between 1 and 1 (the primary version)'],
      [doc(key({ minDecryptionVersion: 2 })), 'keys[0].minDecryptionVersion 2 is not between 1 and 1 (the primary version)'],
      [doc(key({ state: 'pending_deletion' })), 'keys[0] is pending deletion without a deletionTime'],
      // Beyond what a Date holds: accepted, they broke errors, the clock-step postponement (and with
      // it all due work) and GetKey/ListKeys later (found by review).
      [doc(key({ createTime: 1e300 })), 'keys[0].createTime is not a time (ms since the epoch, within ±8.64e15)'],
      [doc(key({ state: 'pending_deletion', deletionTime: 9e15 })), 'keys[0].deletionTime is neither null nor a time (ms since the epoch, within ±8.64e15)'],
      [doc(key({ updateTime: -9e15 })), 'keys[0].updateTime is not a time (ms since the epoch, within ±8.64e15)'],
      [doc(key({ rotationPeriodMs: 3_155_760_000_001 })), 'keys[0].rotationPeriodMs is neither null nor a positive number up to 100 years'],
    ];
    for (const [d, want] of cases) expect(problem(d), JSON.stringify(want)).toBe(want);
  });

  it('loadedState: no file is the empty state; a file holding null is refused (it was taken as empty: found by review)', () => {
    expect(loadedState(undefined, FILE)).toEqual(EMPTY_STATE);
    expect(() => loadedState(null, FILE)).toThrow(`${FILE}: not a JSON object`);
  });

  it('never quotes blob-like values, wherever they are', () => {
    expect(problem({ format: SECRET, masterCheck: null, keys: [] })).toBe('unsupported format a string value (this daemon reads format 1)');
    expect(problem(doc(key({ suite: SECRET })))).toBe('keys[0].suite a string value is not a aead suite');
    expect(problem(doc(key({ state: SECRET as never })))).toBe('keys[0].state a string value is invalid');
    expect(problem(doc(key({ minDecryptionVersion: SECRET as never })))).toMatch(/^keys\[0\]\.minDecryptionVersion a string value is not between/);
    expect(problem(doc(key({ name: SECRET })))).toBe('keys[0].name is not a valid key name');
    expect(problem(doc(key({ id: SECRET })))).toBe('keys[0].id is not 32 lowercase hex digits');
  });
});

describe('model helpers', () => {
  it('isValidKeyName: 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit', () => {
    for (const ok of ['a', 'Z', '0', 'a.b-c_d', 'x'.repeat(64)]) expect(isValidKeyName(ok), ok).toBe(true);
    for (const bad of ['', '.a', '-a', '_a', 'a b', 'a/b', 'a:b', 'é', 'x'.repeat(65), 'a\n']) expect(isValidKeyName(bad), JSON.stringify(bad)).toBe(false);
  });

  it('nextRotationTime: a period after the last rotation (or creation); generated keys only', () => {
    expect(nextRotationTime(key())).toBeNull();
    expect(nextRotationTime(key({ rotationPeriodMs: 10, createTime: 100 }))).toBe(110);
    expect(nextRotationTime(key({ rotationPeriodMs: 10, createTime: 100, rotateTime: 500 }))).toBe(510);
    expect(nextRotationTime(key({ rotationPeriodMs: 10, origin: 'imported' }))).toBeNull();
  });

  it('primaryVersion is the newest', () => {
    const k = key({ versions: [1, 2, 3].map((version) => ({ version, createTime: version, blobs: [SECRET], encryptionsReserved: 0 })) });
    expect(primaryVersion(k).version).toBe(3);
  });
});
