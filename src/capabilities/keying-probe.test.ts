/**
 * A full kernel key quota during the start-up probe (add_key: EDQUOT; review by helper-197): it was
 * reported as keying by serial that "could not be checked", and generated keys as not working on
 * this kernel. It says the quota is full and how to raise it. The kernel here is a mock: AF_ALG
 * binds, and add_key fails as told.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../native-ffi/syscall-error.js';

const fake = vi.hoisted(() => ({ addKey: undefined as number | undefined, addKeyOf: undefined as string | undefined }));

vi.mock('../../native-ffi/af-alg.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../native-ffi/af-alg.js')>();
  let fd = 100;
  return { ...real, checkFamily: () => undefined, openTransform: () => fd++, closeFd: () => undefined, setKeyBySerial: () => undefined, acceptOp: () => fd++, sendRequest: () => 0, readResult: () => 32 };
});
vi.mock('../../native-ffi/keyctl.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../native-ffi/keyctl.js')>();
  let serial = 1000;
  return {
    ...real,
    getKeyringId: () => 1,
    createKeyring: () => serial++,
    invalidateKey: () => undefined,
    readKey: () => Buffer.alloc(8),
    addKey: (type: string) => {
      if (fake.addKey !== undefined && (fake.addKeyOf === undefined || fake.addKeyOf === type)) throw new SyscallError('add_key', fake.addKey, type);
      return serial++;
    },
  };
});

const { cannotWork, probeCapabilities, summarize } = await import('./probe.js');
const { keyQuotaFull, probeGeneratedKeys } = await import('./keying-probe.js');
const { doctor } = await import('../client/commands/doctor.js');

const [EDQUOT, ENOSYS] = [122, 38];
const uid = process.getuid!();

beforeEach(() => {
  fake.addKey = undefined;
  fake.addKeyOf = undefined;
});

describe('the capability probe and a full kernel key quota', () => {
  it('names the quota, its uid and the sysctls to raise for that uid', () => {
    expect(keyQuotaFull(0)).toBe('the kernel key quota of uid 0 is full (EDQUOT from add_key): raise /proc/sys/kernel/keys/root_maxkeys and root_maxbytes (sysctl kernel.keys.root_maxkeys / kernel.keys.root_maxbytes; /proc/key-users shows the use), or free keys this uid holds');
    expect(keyQuotaFull(998)).toBe('the kernel key quota of uid 998 is full (EDQUOT from add_key): raise /proc/sys/kernel/keys/maxkeys and maxbytes (sysctl kernel.keys.maxkeys / kernel.keys.maxbytes; /proc/key-users shows the use), or free keys this uid holds');
  });

  it('EDQUOT keying by serial: the daemon does not start, saying the quota is full, not that keying "could not be checked"', () => {
    fake.addKey = EDQUOT;
    const r = probeCapabilities();
    expect(r.keySerial).toEqual({ supported: null, verified: false, failed: true, errno: 'EDQUOT', detail: keyQuotaFull(uid) });
    expect(cannotWork(r)).toBe(keyQuotaFull(uid));
    expect(r.summary).toContain(`Keying by kernel key serial: ${keyQuotaFull(uid)}.`);
    let out = '';
    expect(doctor(false, (s) => (out += s))).toBe(1);
    expect(out).toContain(`Verdict: ringfence cannot work in a process like this one (uid ${uid}): ${keyQuotaFull(uid)}`);
    expect(out).not.toMatch(/could not be checked/);
  });

  it('another failure of the check is still one that "could not be checked"', () => {
    fake.addKey = ENOSYS;
    expect(cannotWork(probeCapabilities())).toMatch(/^keying AF_ALG by kernel key serial could not be checked \(add_key \(logon\) failed: ENOSYS/);
  });

  it('EDQUOT while checking generated keys: not checked, the quota named, not "do not work here"', () => {
    fake.addKey = EDQUOT;
    fake.addKeyOf = 'encrypted';
    const generatedKeys = probeGeneratedKeys();
    expect(generatedKeys).toEqual({ supported: null, detail: keyQuotaFull(uid), errno: 'EDQUOT' });
    const r = probeCapabilities();
    const text = summarize({ ...r, keySerial: { supported: true, verified: true, detail: '' }, generatedKeys }).join('\n');
    expect(text).toContain(`Kernel-generated keys could not be checked: ${keyQuotaFull(uid)}.`);
    expect(text).not.toMatch(/do not work here/);
  });
});
