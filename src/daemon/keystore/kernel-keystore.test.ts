import { afterEach, describe, expect, it } from 'vitest';
import { NOBODY, projectModule, runTsJson } from '../../../test/support/run-ts.js';
import { isKeystoreError } from './errors.js';
import { KEY_PERM, KernelKeystore } from './kernel-keystore.js';
import * as keyctl from '../../../native-ffi/keyctl.js';
import { Perm } from '../../../native-ffi/keyctl.js';

// Key retention works natively on the host, so these run outside the VM.
const stores: KernelKeystore[] = [];
function store(master?: Buffer, name = `rf-test-${process.pid}-${stores.length}`): KernelKeystore {
  const s = new KernelKeystore({ keyringName: name });
  if (master) s.loadMasterKey(Buffer.from(master));
  stores.push(s);
  return s;
}
afterEach(() => stores.splice(0).forEach((s) => s.close()));

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isKeystoreError(err)) return err.code;
    throw err;
  }
  throw new Error('expected a KeystoreError');
}

const MASTER = Buffer.alloc(32, 0x5a);

describe('KernelKeystore', () => {
  it('wipes the master key buffer it was given', () => {
    const material = Buffer.alloc(32, 9);
    store().loadMasterKey(material);
    expect(material.equals(Buffer.alloc(32))).toBe(true);
  });

  it('generates encrypted keys with frozen possessor-only permissions', () => {
    const s = store(MASTER);
    const { serial, blob } = s.generate('rf:k1:v1', 32);
    expect(blob).toMatch(/^default user:ringfence:master 32 [0-9a-f]+$/);
    const d = s.describe(serial);
    // keyctl(2): possessor VIEW (0x01000000) | SEARCH (0x08000000), nothing else: not KEY_PERM,
    // which is the code's own constant.
    expect(d).toMatchObject({ type: 'encrypted', description: 'rf:k1:v1', perm: 0x09000000 });
    expect(KEY_PERM).toBe(0x09000000);
    // Frozen: without SETATTR not even the possessor can change them (found by review: a KEY_PERM
    // with SETATTR passed every test).
    expect(() => keyctl.setPerm(serial, Perm.POS_ALL)).toThrow(/EACCES/);
  });

  it('reloads a generated key from its blob under the same master key', () => {
    const s = store(MASTER);
    const { blob } = s.generate('rf:k2:v1', 64);
    const serial = s.load('rf:k2:v1-again', blob);
    expect(keyctl.describeKey(serial).type).toBe('encrypted');
  });

  it('refuses a blob under a different master key, a missing master, and a malformed blob', () => {
    // One store at a time: the kernel finds a master key by name in all of this process's keyrings.
    const only = (master: Buffer | undefined, fn: (s: KernelKeystore) => unknown) => {
      const s = store(master);
      try {
        return fn(s);
      } finally {
        stores.splice(stores.indexOf(s), 1);
        s.close();
      }
    };
    const { blob } = only(MASTER, (s) => s.generate('rf:k3:v1', 32)) as { blob: string };
    expect(only(Buffer.alloc(32, 1), (s) => code(() => s.load('rf:k3:v1', blob)))).toBe('MASTER_KEY_MISMATCH');
    expect(only(undefined, (s) => code(() => s.load('rf:k3:v1', blob)))).toBe('MASTER_KEY_MISSING');
    expect(only(MASTER, (s) => code(() => s.load('rf:k3:v1', blob.replace('user:ringfence:master', 'user:other'))))).toBe('MASTER_KEY_MISMATCH');
    expect(only(MASTER, (s) => code(() => s.load('rf:k3:v1', 'default user:ringfence:master 32 zz')))).toBe('INVALID_KEY');
    const flipped = blob.slice(0, -1) + (blob.endsWith('0') ? '1' : '0');
    expect(only(MASTER, (s) => code(() => s.load('rf:k3:v1', flipped)))).toBe('MASTER_KEY_MISMATCH');
    expect(only(MASTER, (s) => s.load('rf:k3:v1', blob))).toBeGreaterThan(0);
  });

  it('rejects sizes an encrypted key cannot hold', () => {
    const s = store(MASTER);
    expect(code(() => s.generate('rf:small', 16))).toBe('INVALID_KEY');
    expect(code(() => s.generate('rf:big', 4097))).toBe('INVALID_KEY');
    expect(code(() => store().loadMasterKey(Buffer.alloc(16)))).toBe('INVALID_KEY');
  });

  it('imports raw material as a logon key that cannot be read back, wiping the buffer', () => {
    const s = store();
    const material = Buffer.alloc(32, 0x42);
    const serial = s.importRaw('ringfence:imported:v1', material);
    expect(material.equals(Buffer.alloc(32))).toBe(true);
    expect(s.describe(serial)).toMatchObject({ type: 'logon', perm: KEY_PERM });
    expect(() => keyctl.readKey(serial)).toThrow(/EOPNOTSUPP/);
    expect(code(() => s.importRaw('noprefix', Buffer.alloc(32)))).toBe('INVALID_KEY');
  });

  it('refuses a second key of the same description, and a second master key, as KEY_EXISTS', () => {
    const s = store(MASTER);
    s.importRaw('ringfence:dup:v1', Buffer.alloc(32, 1));
    expect(code(() => s.importRaw('ringfence:dup:v1', Buffer.alloc(32, 2)))).toBe('KEY_EXISTS');
    s.generate('rf:dup:v1', 32);
    expect(code(() => s.generate('rf:dup:v1', 32))).toBe('KEY_EXISTS');
    expect(code(() => s.loadMasterKey(Buffer.alloc(32, 3)))).toBe('KEY_EXISTS');
  });

  it('destroys keys; destroying twice is harmless', () => {
    const s = store();
    const serial = s.importRaw('ringfence:gone:v1', Buffer.alloc(32, 1));
    s.destroy(serial);
    s.destroy(serial);
    expect(code(() => s.describe(serial))).toBe('KEY_GONE');
  });

  it('keeps keys from another process of the same uid and from another uid', () => {
    const s = store(MASTER);
    const { serial } = s.generate('rf:private:v1', 32);
    const logon = s.importRaw('ringfence:private:v1', Buffer.alloc(32, 3));
    const probe = `import * as k from ${projectModule('native-ffi/keyctl.ts')};
      const r = {};
      for (const serial of [${serial}, ${logon}]) {
        for (const [name, fn] of [['describe', () => k.describeKey(serial)], ['read', () => k.readKey(serial)], ['link', () => k.linkKey(serial, k.getKeyringId(k.KeySpec.PROCESS, true))]]) {
          try { fn(); r[name + serial] = 'OK'; } catch (e) { r[name + serial] = e.code; }
        }
      }
      console.log(JSON.stringify(r));`;
    for (const uid of [undefined, NOBODY]) {
      const r = runTsJson<Record<string, string>>(probe, uid === undefined ? {} : { uid });
      expect(Object.values(r)).toHaveLength(6);
      for (const v of Object.values(r)) expect(v).toBe('EACCES');
    }
  });

  it('reports an exhausted key quota as QUOTA_EXHAUSTED', () => {
    // uid nobody has the default non-root quota (kernel.keys.maxbytes, 20000 by default).
    const r = runTsJson<{ code?: string; message?: string; n: number }>(
      `import { KernelKeystore } from ${projectModule('src/daemon/keystore/kernel-keystore.ts')};
       const s = new KernelKeystore({ keyringName: 'rf-quota' });
       let n = 0;
       try { for (; n < 10000; n++) s.importRaw('ringfence:q' + n, Buffer.alloc(4096, 1)); console.log(JSON.stringify({ n })); }
       catch (e) { console.log(JSON.stringify({ n, code: e.code, message: e.message })); }`,
      { uid: NOBODY },
    );
    expect(r.code).toBe('QUOTA_EXHAUSTED');
    expect(r.message).toMatch(/kernel\.keys\.maxbytes/);
    expect(r.n).toBeGreaterThan(0);
  });
});
