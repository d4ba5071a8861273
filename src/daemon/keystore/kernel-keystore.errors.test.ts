import { describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../../native-ffi/syscall-error.js';

// A kernel without the `encrypted` key type cannot be booted here (Debian builds it in), so this
// one case fakes add_key's answer: ENODEV, as key_type_lookup() returns for an unknown type.
// The keyring itself fails when `failKeyring` is set: EDQUOT, as for a uid whose key quota is full.
const fake = vi.hoisted(() => ({ failKeyring: false }));
vi.mock('../../../native-ffi/keyctl.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../native-ffi/keyctl.js')>();
  return {
    ...real,
    createKeyring: (...args: Parameters<typeof real.createKeyring>) => {
      if (fake.failKeyring) throw new SyscallError('add_key', 122, 'keyring "ringfence"');
      return real.createKeyring(...args);
    },
    addKey: (type: string, description: string, payload: Buffer | null, keyring: number) => {
      if (type === 'encrypted') throw new SyscallError('add_key', 19, `${type} "${description}"`);
      return real.addKey(type, description, payload, keyring);
    },
  };
});

const { KernelKeystore } = await import('./kernel-keystore.js');

describe('KernelKeystore on a kernel without encrypted keys', () => {
  it('says which kernel feature is missing', () => {
    const s = new KernelKeystore({ keyringName: `rf-nodev-${process.pid}` });
    try {
      s.loadMasterKey(Buffer.alloc(32, 1));
      expect(() => s.generate('rf:k:v1', 32)).toThrow(/no "encrypted" key type \(CONFIG_ENCRYPTED_KEYS/);
      try {
        s.generate('rf:k:v1', 32);
      } catch (err) {
        expect(err).toMatchObject({ code: 'KEY_TYPE_UNSUPPORTED' });
      }
    } finally {
      s.close();
    }
  });
});

describe('KernelKeystore.withMasterKey', () => {
  it('wipes the master key when the keyring cannot be made (found by review: it stayed in the heap)', () => {
    const master = Buffer.alloc(32, 0xa5);
    fake.failKeyring = true;
    try {
      expect(() => KernelKeystore.withMasterKey(master, { keyringName: `rf-edquot-${process.pid}` })).toThrow(/creating the daemon keyring/);
    } finally {
      fake.failKeyring = false;
    }
    expect(master.equals(Buffer.alloc(32))).toBe(true);
  });

  it('wipes it when the kernel refuses it, and when it is loaded', () => {
    const short = Buffer.alloc(16, 0xa5);
    expect(() => KernelKeystore.withMasterKey(short, { keyringName: `rf-short-${process.pid}` })).toThrow(/must be 32 to 4096 bytes/);
    expect(short.equals(Buffer.alloc(16))).toBe(true);
    const master = Buffer.alloc(32, 0xa5);
    const store = KernelKeystore.withMasterKey(master, { keyringName: `rf-ok-${process.pid}` });
    try {
      expect(store.hasMasterKey).toBe(true);
      expect(master.equals(Buffer.alloc(32))).toBe(true);
    } finally {
      store.close();
    }
  });
});
