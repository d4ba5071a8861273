/**
 * Data arguments from JavaScript (review by helper-178): protobuf-es took undefined and null as empty
 * bytes, so `client.encrypt(key, record.missingField)` resolved with a valid ciphertext of nothing,
 * and hash / computeMac gave the digest or MAC of nothing; an ArrayBuffer failed as an INTERNAL
 * "serialization failure". Anything but a Uint8Array or a string is a TypeError, before any call.
 */
import { getEventListeners } from 'node:events';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();
const notData = [undefined, null, new ArrayBuffer(4), new DataView(new ArrayBuffer(4)), 42];
const calls = () => Object.values(env.fake.stats.calls).reduce((a, b) => a + b, 0);

describe('a data argument that is neither bytes nor a string', () => {
  it('is a TypeError from unary calls, and nothing is sent', async () => {
    const before = calls();
    for (const v of notData) {
      await expect(env.client.encrypt('k', v as never)).rejects.toThrow(TypeError);
      await expect(env.client.computeMac('m', v as never)).rejects.toThrow(TypeError);
      await expect(env.client.hash(v as never)).rejects.toThrow(TypeError);
      if (v !== undefined) await expect(env.client.encrypt('k', 'x', { associatedData: v as never })).rejects.toThrow(TypeError);
      await expect(env.client.decrypt(v as never)).rejects.toThrow(TypeError);
      await expect(env.client.verifyMac('m', 'x', v as never)).rejects.toThrow(TypeError);
    }
    expect(calls()).toBe(before);
  });

  it('is a TypeError from session operations, and nothing is sent', async () => {
    const s = env.client.session();
    const ops = env.fake.stats.sessionOps;
    for (const v of notData) {
      await expect(s.encrypt('k', v as never)).rejects.toThrow(TypeError);
      await expect(s.hash(v as never)).rejects.toThrow(TypeError);
    }
    expect((await s.hash('still usable')).digest).toHaveLength(32);
    expect(env.fake.stats.sessionOps).toBe(ops + 1);
    await s.close();
  });

  it("a stream's associated data is checked before its RPC starts (none is left listening to the signal)", () => {
    const { signal } = new AbortController();
    for (const v of notData.slice(1)) {
      expect(() => env.client.encryptStream('k', { associatedData: v as never, signal })).toThrow(TypeError);
      expect(() => env.client.decryptStream({ associatedData: v as never, signal })).toThrow(TypeError);
    }
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('Buffers, Uint8Arrays and strings still go', async () => {
    // Bytes of another realm (a vm context, Jest's environment) too (review by helper-187).
    const foreign = runInNewContext('new Uint8Array([97, 98, 99])') as Uint8Array;
    for (const v of [Buffer.from('abc'), new Uint8Array([97, 98, 99]), foreign, 'abc']) {
      const { ciphertext } = await env.client.encrypt('k', v, { associatedData: v });
      expect(Buffer.from((await env.client.decrypt(ciphertext, { associatedData: 'abc' })).plaintext).toString()).toBe('abc');
    }
  });
});

/**
 * Names, key material and flags from JavaScript: protobuf-es wrote a number or an object as its
 * String() ("[object Object]" — e.g. the Key that createKey answered, passed where its name goes),
 * took any truthy value as true (`deletionProtection: 'false'` turned protection on), and failed
 * on an ArrayBuffer or a string of material as an INTERNAL "serialization failure".
 */
describe('a name, key material or flag of the wrong type', () => {
  const notName = [42, {}, { name: 'k' }, true, null];

  it('is a TypeError naming the argument, and nothing is sent', async () => {
    const before = calls();
    for (const v of notName) {
      const name = v as never;
      await expect(env.client.encrypt(name, 'x')).rejects.toThrow(/key name must be a string/);
      await expect(env.client.computeMac(name, 'x')).rejects.toThrow(TypeError);
      await expect(env.client.verifyMac(name, 'x', new Uint8Array(32))).rejects.toThrow(TypeError);
      await expect(env.client.generateDataKey(name)).rejects.toThrow(TypeError);
      await expect(env.client.reEncrypt(new Uint8Array(60), { destinationKeyName: name })).rejects.toThrow(/destinationKeyName must be a string/);
      await expect(env.client.createKey(name)).rejects.toThrow(TypeError);
      await expect(env.client.getKey(name)).rejects.toThrow(TypeError);
      await expect(env.client.rotateKey(name)).rejects.toThrow(TypeError);
      await expect(env.client.disableKey(name)).rejects.toThrow(TypeError);
      await expect(env.client.scheduleKeyDeletion(name)).rejects.toThrow(TypeError);
      await expect(env.client.listKeys({ pageToken: name })).rejects.toThrow(/pageToken must be a string/);
      expect(() => env.client.encryptStream(name)).toThrow(TypeError);
    }
    for (const v of [new ArrayBuffer(32), 'k'.repeat(32), [1, 2, 3], undefined]) {
      await expect(env.client.importKey('k', v as never)).rejects.toThrow(/key material must be a Uint8Array/);
      if (v !== undefined) await expect(env.client.rotateKey('k', v as never)).rejects.toThrow(/key material must be a Uint8Array/);
    }
    for (const v of ['false', 0, 1, null]) {
      await expect(env.client.createKey('k', { deletionProtection: v as never })).rejects.toThrow(/deletionProtection must be true or false/);
      await expect(env.client.updateKey('k', { deletionProtection: v as never })).rejects.toThrow(TypeError);
      await expect(env.client.generateDataKey('k', { omitPlaintext: v as never })).rejects.toThrow(/omitPlaintext must be true or false/);
    }
    expect(calls()).toBe(before);
  });

  it('the session checks them too', async () => {
    const s = env.client.session();
    await expect(s.encrypt({ name: 'k' } as never, 'x')).rejects.toThrow(TypeError);
    expect((await s.hash('still usable')).digest).toHaveLength(32);
    await s.close();
  });

  it('strings, bytes and booleans still go', async () => {
    const key = await env.client.importKey('imported', new Uint8Array(32), { deletionProtection: false });
    expect(key.name).toBe('imported');
    expect((await env.client.updateKey('imported', { deletionProtection: true })).deletionProtection).toBe(true);
    const foreign = runInNewContext('new Uint8Array(32)') as Uint8Array;
    expect((await env.client.rotateKey('imported', foreign)).name).toBe('imported');
    expect((await env.client.encrypt('k', 'x')).ciphertext.length).toBeGreaterThan(0);
  });
});

describe('batch items', () => {
  it('are checked as the unary arguments are: an item without its data is a TypeError, and nothing is sent', async () => {
    // They went to protobuf-es as they were: an item whose plaintext was undefined got the
    // ciphertext of nothing, and a MAC item without data the MAC of nothing.
    const before = calls();
    await expect(env.client.batchEncrypt([{ keyName: 'k', plaintext: 'a' }, { keyName: 'k' } as never])).rejects.toThrow(/^data must be a Uint8Array/);
    await expect(env.client.batchEncrypt([{ keyName: { name: 'k' }, plaintext: 'a' } as never])).rejects.toThrow(/key name must be a string/);
    await expect(env.client.batchComputeMac([{ keyName: 'm', data: undefined } as never])).rejects.toThrow(TypeError);
    await expect(env.client.batchDecrypt([{ ciphertext: null } as never])).rejects.toThrow(TypeError);
    await expect(env.client.batchDecrypt([undefined] as never)).rejects.toThrow('batchDecrypt item 0 must be an object, got [object Undefined]');
    await expect(env.client.batchEncrypt(new Array(2) as never)).rejects.toThrow('batchEncrypt item 0 must be an object, got [object Undefined]');
    await expect(env.client.batchEncrypt({ keyName: 'k', plaintext: 'a' } as never)).rejects.toThrow('batchEncrypt takes an array of items, got [object Object]');
    expect(calls()).toBe(before);
  });

  it('take strings for data and associated data, as the unary methods do', async () => {
    const sealed = await env.client.batchEncrypt([{ keyName: 'k', plaintext: 'one', associatedData: 'ctx' }, { keyName: 'k', plaintext: Buffer.from('two') }]);
    const ciphertexts = sealed.results.map((r) => (r.result.case === 'response' ? r.result.value.ciphertext : new Uint8Array()));
    const opened = await env.client.batchDecrypt([{ ciphertext: ciphertexts[0]!, associatedData: 'ctx' }, { ciphertext: ciphertexts[1]! }]);
    expect(opened.results.map((r) => (r.result.case === 'response' ? Buffer.from(r.result.value.plaintext).toString() : r.result.case))).toEqual(['one', 'two']);
    const macs = await env.client.batchComputeMac([{ keyName: 'm', data: 'x' }]);
    expect(macs.results[0]!.result.case).toBe('response');
  });
});
