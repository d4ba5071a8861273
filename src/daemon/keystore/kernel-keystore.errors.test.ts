import { describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../../native-ffi/syscall-error.js';

// A kernel without the `encrypted` key type cannot be booted here (Debian builds it in), so this
// one case fakes add_key's answer: ENODEV, as key_type_lookup() returns for an unknown type.
vi.mock('../../../native-ffi/keyctl.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../native-ffi/keyctl.js')>();
  return {
    ...real,
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
