import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as keyctl from './keyctl.js';
import { Perm } from './keyctl.js';
import { SyscallError } from './syscall-error.js';

// These run natively: the host kernel has key retention even though it lacks AF_ALG.
let ring: number;
beforeAll(() => {
  ring = keyctl.createKeyring(`rf-test-${process.pid}`, keyctl.getKeyringId(keyctl.KeySpec.PROCESS, true));
});
afterAll(() => keyctl.invalidateKey(ring));

function errCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SyscallError);
    return (err as SyscallError).code;
  }
  throw new Error('expected a SyscallError');
}

describe('keyctl', () => {
  it('reads back a user key, and describes it', () => {
    const serial = keyctl.addKey('user', 'rf:user', Buffer.from('payload-1'), ring);
    expect(keyctl.readKey(serial).toString()).toBe('payload-1');
    const d = keyctl.describeKey(serial);
    expect(d).toMatchObject({ type: 'user', uid: process.getuid!(), description: 'rf:user' });
  });

  it('never reads back a logon key', () => {
    const serial = keyctl.addKey('logon', 'rf:logon', Buffer.alloc(32, 7), ring);
    expect(errCode(() => keyctl.readKey(serial))).toBe('EOPNOTSUPP');
  });

  it('rejects a logon description without a prefix, naming the syscall', () => {
    try {
      keyctl.addKey('logon', 'noprefix', Buffer.alloc(32), ring);
      expect.fail('accepted');
    } catch (err) {
      expect(err).toMatchObject({ syscall: 'add_key', code: 'EINVAL', errno: 22 });
      expect((err as Error).message).toContain('logon "noprefix"');
    }
  });

  it('reports an unknown key type as ENODEV', () => {
    expect(errCode(() => keyctl.addKey('no-such-type', 'x', Buffer.from('x'), ring))).toBe('ENODEV');
  });

  it('enforces permissions set with SETPERM', () => {
    const serial = keyctl.addKey('user', 'rf:perm', Buffer.from('secret'), ring);
    keyctl.setPerm(serial, Perm.POS_VIEW | Perm.POS_SEARCH);
    expect(keyctl.describeKey(serial).perm).toBe(Perm.POS_VIEW | Perm.POS_SEARCH);
    // keyctl_read_key() lets a possessor that may SEARCH read even without READ: a kernel rule,
    // which is why ringfence relies on possession (a private keyring), not on the READ bit alone.
    expect(keyctl.readKey(serial).toString()).toBe('secret');
    // Without SETATTR the permissions are frozen: not even the owner can grant itself more.
    expect(errCode(() => keyctl.setPerm(serial, Perm.POS_ALL))).toBe('EACCES');
    const viewOnly = keyctl.addKey('user', 'rf:perm2', Buffer.from('secret'), ring);
    keyctl.setPerm(viewOnly, Perm.POS_VIEW);
    expect(errCode(() => keyctl.readKey(viewOnly))).toBe('EACCES');
  });

  it('finds keys with SEARCH, and reports revoked and invalidated keys', () => {
    const serial = keyctl.addKey('user', 'rf:search', Buffer.from('x'), ring);
    expect(keyctl.searchKey(ring, 'user', 'rf:search')).toBe(serial);
    expect(errCode(() => keyctl.searchKey(ring, 'user', 'rf:absent'))).toBe('ENOKEY');
    keyctl.revokeKey(serial);
    expect(errCode(() => keyctl.readKey(serial))).toBe('EKEYREVOKED');
    const other = keyctl.addKey('user', 'rf:inval', Buffer.from('x'), ring);
    keyctl.invalidateKey(other);
    expect(errCode(() => keyctl.describeKey(other))).toBe('ENOKEY');
  });

  it('unlinks a key from a keyring', () => {
    const serial = keyctl.addKey('user', 'rf:unlink', Buffer.from('x'), ring);
    keyctl.unlinkKey(serial, ring);
    expect(errCode(() => keyctl.searchKey(ring, 'user', 'rf:unlink'))).toBe('ENOKEY');
  });

  it('wraps encrypted keys with a master key and reloads them from the blob', () => {
    keyctl.addKey('user', 'rf:master', Buffer.alloc(32, 1), ring);
    const serial = keyctl.addKey('encrypted', 'rf:enc', Buffer.from('new default user:rf:master 32'), ring);
    const blob = keyctl.readKey(serial).toString();
    expect(blob).toMatch(/^default user:rf:master 32 [0-9a-f]+$/);
    const again = keyctl.addKey('encrypted', 'rf:enc2', Buffer.from(`load ${blob}`), ring);
    expect(keyctl.describeKey(again).type).toBe('encrypted');
    // A different master key of the same name cannot unwrap the blob.
    keyctl.addKey('user', 'rf:master', Buffer.alloc(32, 2), ring);
    expect(errCode(() => keyctl.addKey('encrypted', 'rf:enc3', Buffer.from(`load ${blob}`), ring))).toBe('EINVAL');
  });

  // Starts a child process through tsx: seconds on a loaded machine.
  it('refuses another process, same uid, a key that only its possessor may use', { timeout: 60_000 }, () => {
    const serial = keyctl.addKey('user', 'rf:private', Buffer.from('secret'), ring);
    keyctl.setPerm(serial, Perm.POS_VIEW | Perm.POS_SEARCH | Perm.POS_READ);
    expect(keyctl.readKey(serial).toString()).toBe('secret'); // we possess it
    const script = `import('${new URL('./keyctl.ts', import.meta.url).pathname}').then((k) => {
      try { k.readKey(${serial}); console.log('READ'); } catch (e) { console.log(e.code); }
    })`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8' });
    expect(out.trim()).toBe('EACCES');
  });
});
