import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ciphertextToText,
  HashAlgorithm,
  isAuthenticationFailed,
  isFailedPrecondition,
  KeyPurpose,
  KeyState,
  KeyView,
  parseHashAlgorithm,
  parseSuite,
  RingfenceClient,
  Suite,
  suiteName,
} from './index.js';
import { startFakeServer, type FakeServer } from './test-server.js';

let fake: FakeServer;
let client: RingfenceClient;

beforeAll(async () => {
  fake = await startFakeServer();
  client = new RingfenceClient({ socketPath: fake.socketPath });
});
afterAll(async () => {
  await client.close();
  await fake.close();
});

describe('unary cryptography', () => {
  it('encrypt / decrypt round trip with associated data, binary or text form', async () => {
    const enc = await client.encrypt('app', 'hello', { associatedData: 'user:42' });
    expect(enc.keyName).toBe('app');
    expect(enc.keyVersion).toBe(1);
    const dec = await client.decrypt(enc.ciphertext, { associatedData: 'user:42' });
    expect(Buffer.from(dec.plaintext).toString()).toBe('hello');
    const fromText = await client.decrypt(ciphertextToText(enc.ciphertext), { associatedData: Buffer.from('user:42') });
    expect(Buffer.from(fromText.plaintext).toString()).toBe('hello');
    await expect(client.decrypt('vault:v1:abc')).rejects.toThrow(/must start with "ringfence:v1:"/);
    await expect(client.pipelined.decrypt('vault:v1:abc')).rejects.toThrow(/must start with "ringfence:v1:"/);
  });

  it('passes 1 MiB payloads both ways (raised message limits)', async () => {
    const plaintext = randomBytes(1024 * 1024);
    const { ciphertext } = await client.encrypt('big', plaintext);
    expect(ciphertext.length).toBeGreaterThan(1024 * 1024);
    expect(Buffer.from((await client.decrypt(ciphertext)).plaintext).equals(plaintext)).toBe(true);
    expect((await client.generateRandom(1024 * 1024)).data.length).toBe(1024 * 1024);
  });

  it('reEncrypt, generateDataKey, MACs, random', async () => {
    const { ciphertext } = await client.encrypt('a', 'moved', { associatedData: 'x' });
    const re = await client.reEncrypt(ciphertext, { associatedData: 'x', destinationKeyName: 'b', destinationAssociatedData: 'y' });
    expect([re.sourceKeyName, re.keyName]).toEqual(['a', 'b']);
    expect(Buffer.from((await client.decrypt(re.ciphertext, { associatedData: 'y' })).plaintext).toString()).toBe('moved');

    const dk = await client.generateDataKey('a', { lengthBytes: 16 });
    expect(dk.plaintext.length).toBe(16);
    expect(Buffer.from((await client.decrypt(dk.ciphertext)).plaintext).equals(Buffer.from(dk.plaintext))).toBe(true);
    expect((await client.generateDataKey('a', { omitPlaintext: true })).plaintext.length).toBe(0);

    const { mac } = await client.computeMac('m', 'data');
    expect((await client.verifyMac('m', 'data', mac)).valid).toBe(true);
    expect((await client.verifyMac('m', 'other', mac, { keyVersion: 1 })).valid).toBe(false);
    expect((fake.stats.lastRequest.VerifyMac as { keyVersion: number }).keyVersion).toBe(1);
  });

  it('generateDataKey binds its associated data, with or without the plaintext, unary and pipelined', async () => {
    // The fake seals the data key with the request's associated_data (real AES-GCM), so only AAD that
    // reached the server makes the ciphertext open with it and refuse another.
    const aad = 'tenant:7';
    for (const omitPlaintext of [false, true]) {
      for (const [how, api] of [['unary', client], ['pipelined', client.pipelined]] as const) {
        const dk = await api.generateDataKey('dk', { associatedData: aad, omitPlaintext });
        if (how === 'unary') {
          const sent = fake.stats.lastRequest.GenerateDataKey as { associatedData: Uint8Array; omitPlaintext: boolean };
          expect([Buffer.from(sent.associatedData).toString(), sent.omitPlaintext]).toEqual([aad, omitPlaintext]);
        }
        expect(dk.plaintext.length, `${how} omitPlaintext=${omitPlaintext}`).toBe(omitPlaintext ? 0 : 32);
        const opened = await api.decrypt(dk.ciphertext, { associatedData: Buffer.from(aad) });
        expect(opened.plaintext.length).toBe(32);
        if (!omitPlaintext) expect(Buffer.from(opened.plaintext).equals(Buffer.from(dk.plaintext))).toBe(true);
        for (const wrong of ['tenant:8', undefined]) {
          const err = await api.decrypt(dk.ciphertext, { associatedData: wrong }).catch((e: unknown) => e);
          expect(isAuthenticationFailed(err), `${how} omitPlaintext=${omitPlaintext} aad=${wrong}`).toBe(true);
        }
      }
    }
  });

  it('hash takes the enum or its name', async () => {
    const sha = (alg: string) => createHash(alg).update('abc').digest();
    expect(Buffer.from((await client.hash('abc')).digest).equals(sha('sha256'))).toBe(true);
    const r = await client.hash('abc', 'sha3-256');
    expect(r.algorithm).toBe(HashAlgorithm.SHA3_256);
    expect(Buffer.from(r.digest).equals(sha('sha3-256'))).toBe(true);
    expect(Buffer.from((await client.hash('abc', HashAlgorithm.SHA512)).digest).equals(sha('sha512'))).toBe(true);
    expect(Buffer.from((await client.hash('abc', 'blake2b-512')).digest).equals(sha('blake2b512'))).toBe(true);
    expect(isFailedPrecondition(await client.hash('abc', 'blake2b-256').catch((e: unknown) => e))).toBe(true);
    await expect(client.hash('abc', 'md5' as 'sha256')).rejects.toThrow(/unknown hash algorithm "md5"/);
  });

  it('hashStream hashes a Readable or an async iterable in pieces of at most 1 MiB', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const expected = createHash('sha384').update(data).digest();
    fake.stats.chunkSizes.hash.length = 0;
    const r = await client.hashStream(Readable.from([data.subarray(0, 10), data.subarray(10)]), 'sha384');
    expect(Buffer.from(r.digest).equals(expected)).toBe(true);
    expect(r.dataBytes).toBe(BigInt(data.length));
    expect(Math.max(...fake.stats.chunkSizes.hash)).toBeLessThanOrEqual(1024 * 1024);

    async function* pieces() {
      for (let i = 0; i < data.length; i += 100_000) yield data.subarray(i, i + 100_000);
    }
    expect(Buffer.from((await client.hashStream(pieces(), HashAlgorithm.SHA384)).digest).equals(expected)).toBe(true);
    const empty = await client.hashStream(Readable.from([]));
    expect(Buffer.from(empty.digest).equals(createHash('sha256').digest())).toBe(true);
  });

  it('hashStream: a failing source cancels the RPC and rethrows the source error', async () => {
    async function* broken() {
      yield Buffer.from('a');
      throw new Error('disk on fire');
    }
    await expect(client.hashStream(broken())).rejects.toThrow('disk on fire');
  });

  it('hashStream: a refused algorithm rejects with the typed error', async () => {
    const err = await client.hashStream(Readable.from([Buffer.from('x')]), 'blake2b-256').catch((e: unknown) => e);
    expect(isFailedPrecondition(err)).toBe(true);
  });
});

describe('keys', () => {
  it('createKey maps names and milliseconds to the request', async () => {
    const key = await client.createKey('rotating', { suite: 'aes-256-ccm', rotationPeriodMs: 3_600_000, deletionProtection: true });
    expect(key.suite).toBe(Suite.AES_256_CCM);
    expect(key.rotationPeriod?.seconds).toBe(3600n);
    expect(key.deletionProtection).toBe(true);
    const mac = await client.createKey('mac', { purpose: 'mac' });
    expect(mac.purpose).toBe(KeyPurpose.MAC);
    const imported = await client.importKey('imported', randomBytes(32), { suite: Suite.HMAC_SHA256 });
    expect((fake.stats.lastRequest.ImportKey as { material: Uint8Array }).material.length).toBe(32);
    expect(imported.suite).toBe(Suite.HMAC_SHA256);
  });

  it('lifecycle calls return the updated key', async () => {
    await client.createKey('life');
    expect((await client.rotateKey('life')).primaryVersion).toBe(2);
    const updated = await client.updateKey('life', { minDecryptionVersion: 2, rotationPeriodMs: 0, deletionProtection: false });
    const sent = fake.stats.lastRequest.UpdateKey as { minDecryptionVersion?: number; rotationPeriod?: { seconds: bigint }; deletionProtection?: boolean };
    expect(sent.minDecryptionVersion).toBe(2);
    expect(sent.rotationPeriod?.seconds).toBe(0n); // 0 is sent: it turns rotation off
    expect(sent.deletionProtection).toBe(false);
    expect(updated.minDecryptionVersion).toBe(2);
    await client.updateKey('life', {});
    const unchanged = fake.stats.lastRequest.UpdateKey as { minDecryptionVersion?: number; rotationPeriod?: unknown; deletionProtection?: boolean };
    expect([unchanged.minDecryptionVersion, unchanged.rotationPeriod, unchanged.deletionProtection]).toEqual([undefined, undefined, undefined]);
    expect((await client.disableKey('life')).state).toBe(KeyState.DISABLED);
    expect((await client.enableKey('life')).state).toBe(KeyState.ENABLED);
    const pending = await client.scheduleKeyDeletion('life', { waitingPeriodMs: 2 * 86_400_000 });
    expect(pending.state).toBe(KeyState.PENDING_DELETION);
    expect((fake.stats.lastRequest.ScheduleKeyDeletion as { waitingPeriod?: { seconds: bigint } }).waitingPeriod?.seconds).toBe(172_800n);
    expect((await client.cancelKeyDeletion('life')).state).toBe(KeyState.DISABLED);
    await client.getKey('life', { view: 'basic' });
    expect((fake.stats.lastRequest.GetKey as { view: KeyView }).view).toBe(KeyView.BASIC);
  });

  it('keys() walks every page', async () => {
    const names = Array.from({ length: 120 }, (_, i) => `page-${String(i).padStart(3, '0')}`);
    await Promise.all(names.map((n) => client.createKey(n)));
    const listed: string[] = [];
    for await (const key of client.keys({ pageSize: 25 })) if (key.name.startsWith('page-')) listed.push(key.name);
    expect(listed).toEqual(names);
    const first = await client.listKeys({ pageSize: 10, view: 'full' });
    expect(first.keys).toHaveLength(10);
    expect(first.nextPageToken).not.toBe('');
  });

  it('refuses bad arguments before calling (as rejections)', async () => {
    const calls = fake.stats.calls.CreateKey;
    await expect(client.createKey('x', { suite: 'des' as 'aes-256-gcm' })).rejects.toThrow(/unknown suite "des"/);
    await expect(client.createKey('x', { suite: 'des' as 'aes-256-gcm' })).rejects.toBeInstanceOf(RangeError); // as README says
    await expect(client.updateKey('x', { rotationPeriodMs: -1 })).rejects.toThrow(RangeError);
    expect(fake.stats.calls.CreateKey).toBe(calls);
  });

  it('refuses numbers a request field cannot carry, naming the field, instead of an INTERNAL serialization failure (found by review)', async () => {
    const random = fake.stats.calls.GenerateRandom ?? 0;
    for (const n of [-1, 1.5, 2 ** 32, Number.NaN]) await expect(client.generateRandom(n)).rejects.toThrow(`lengthBytes must be an integer from 0 to 4294967295, got ${n}`);
    await expect(client.generateDataKey('k', { lengthBytes: -1 })).rejects.toThrow(RangeError);
    await expect(client.verifyMac('k', 'data', new Uint8Array(32), { keyVersion: -1 })).rejects.toThrow(/keyVersion must be an integer/);
    await expect(client.updateKey('k', { minDecryptionVersion: 2 ** 32 })).rejects.toThrow(/minDecryptionVersion must be an integer/);
    await expect(client.listKeys({ pageSize: 2 ** 31 })).rejects.toThrow(/pageSize must be a 32-bit integer/);
    expect(fake.stats.calls.GenerateRandom ?? 0).toBe(random);
    expect((await client.generateRandom(2 ** 4)).data).toHaveLength(16);
  });

  // Review by helper-144: 2.3 hours in ms (8279999.999999999) failed as INTERNAL "Request message
  // serialization failure ... invalid int32", and 1e25 ms threw a plain Error "invalid int64".
  it('durations are sent in whole milliseconds, and one longer than the daemon takes is a RangeError naming the option and its bound', async () => {
    type Sent = { rotationPeriod?: { seconds: bigint; nanos: number }; waitingPeriod?: { seconds: bigint; nanos: number } };
    const sent = (rpc: string) => fake.stats.lastRequest[rpc] as Sent;
    const key = await client.createKey('fractional', { rotationPeriodMs: 2.3 * 3_600_000 });
    expect([key.rotationPeriod?.seconds, key.rotationPeriod?.nanos]).toEqual([8280n, 0]);
    await client.updateKey('fractional', { rotationPeriodMs: 3_600_000.1234567 });
    expect([sent('UpdateKey').rotationPeriod?.seconds, sent('UpdateKey').rotationPeriod?.nanos]).toEqual([3600n, 0]);
    // Under half a millisecond but not 0: 1 ms (the daemon refuses it), never 0, which is "no rotation".
    await client.updateKey('fractional', { rotationPeriodMs: 0.2 });
    expect([sent('UpdateKey').rotationPeriod?.seconds, sent('UpdateKey').rotationPeriod?.nanos]).toEqual([0n, 1_000_000]);
    await client.scheduleKeyDeletion('fractional', { waitingPeriodMs: 7 * 86_400_000 + 0.3 });
    expect([sent('ScheduleKeyDeletion').waitingPeriod?.seconds, sent('ScheduleKeyDeletion').waitingPeriod?.nanos]).toEqual([604_800n, 0]);
    await client.createKey('century', { rotationPeriodMs: 3_155_760_000_000 }); // 100 years: the longest
    const calls = { ...fake.stats.calls };
    const bad = async (p: Promise<unknown>, message: string) => {
      const err = await p.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(RangeError);
      expect((err as Error).message).toBe(message);
    };
    const rotation = (got: number) => `rotationPeriodMs must be a number of milliseconds from 0 to 3155760000000 (100 years), got ${got}`;
    await bad(client.createKey('too-long', { rotationPeriodMs: 1e25 }), rotation(1e25));
    await bad(client.updateKey('fractional', { rotationPeriodMs: 1e25 }), rotation(1e25));
    await bad(client.updateKey('fractional', { rotationPeriodMs: 3_155_760_000_001 }), rotation(3_155_760_000_001));
    await bad(client.updateKey('fractional', { rotationPeriodMs: Number.NaN }), rotation(Number.NaN));
    await bad(client.createKey('too-long', { rotationPeriodMs: -1 }), rotation(-1));
    await bad(client.updateKey('fractional', { rotationPeriodMs: -0.3 }), rotation(-0.3)); // not rounded to 0 (off)
    const waiting = (got: number) => `waitingPeriodMs must be a number of milliseconds from 0 to 31536000000 (365 days), got ${got}`;
    await bad(client.scheduleKeyDeletion('fractional', { waitingPeriodMs: 365 * 86_400_000 + 1 }), waiting(365 * 86_400_000 + 1));
    await bad(client.scheduleKeyDeletion('fractional', { waitingPeriodMs: Infinity }), waiting(Infinity));
    expect(fake.stats.calls).toEqual(calls); // refused before calling
  });
});

describe('names', () => {
  it('parse and print the CLI spellings', () => {
    expect(parseSuite('AES-256-GCM')).toBe(Suite.AES_256_GCM);
    expect(suiteName(Suite.CHACHA20_POLY1305)).toBe('chacha20-poly1305');
    expect(suiteName(Suite.UNSPECIFIED)).toBeUndefined();
    expect(parseHashAlgorithm('blake2b-512')).toBe(HashAlgorithm.BLAKE2B_512);
    expect(() => parseHashAlgorithm('constructor')).toThrow(/unknown hash algorithm/);
  });
});

describe('status', () => {
  it('getStatus returns the response message', async () => {
    const s = await client.getStatus();
    expect(s.daemonVersion).toBe('fake');
    expect(s.pid).toBe(process.pid);
  });
});
