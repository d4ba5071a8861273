/**
 * A bind() that fails with a transient errno during the probe (found by review: helper-89). Taken
 * as the answer, a one-off ENOMEM on ccm(aes) made the daemon seal imported material with GCM (which
 * restricted kernels refuse) and one EAGAIN on gcm(aes) changed the default suite, for the
 * daemon's whole life. The kernel here is a mock: the first binds of an algorithm fail as told.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../native-ffi/syscall-error.js';

const fake = vi.hoisted(() => ({ failures: new Map<string, { errno: number; times: number }>(), binds: new Map<string, number>() }));

vi.mock('../../native-ffi/af-alg.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../native-ffi/af-alg.js')>();
  let fd = 100;
  return {
    ...real,
    checkFamily: () => undefined,
    openTransform: (_type: string, name: string) => {
      fake.binds.set(name, (fake.binds.get(name) ?? 0) + 1);
      const f = fake.failures.get(name);
      if (f && f.times > 0) {
        f.times--;
        throw new SyscallError('bind', f.errno, name);
      }
      return fd++;
    },
    closeFd: () => undefined,
    setKeyBySerial: () => undefined,
    acceptOp: () => fd++,
    sendRequest: () => 0,
    readResult: () => 32,
  };
});
vi.mock('../../native-ffi/keyctl.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../native-ffi/keyctl.js')>();
  let serial = 1000;
  return { ...real, getKeyringId: () => 1, createKeyring: () => serial++, invalidateKey: () => undefined, addKey: () => serial++, readKey: () => Buffer.alloc(8) };
});

// Keying by serial works here: only the binds matter.
vi.mock('./keying-probe.js', () => ({ probeKeySerial: () => ({ supported: true, verified: true, detail: 'ok' }), probeGeneratedKeys: () => ({ supported: true, detail: 'ok' }) }));

const { inconclusiveProbe, probeCapabilities } = await import('./probe.js');
const { doctor } = await import('../client/commands/doctor.js');
const { WRAP_SUITES } = await import('../daemon/keys/material.js');

const [EAGAIN, ENOMEM, ENOENT, EINVAL] = [11, 12, 2, 22];
const fail = (name: string, errno: number, times = Infinity) => fake.failures.set(name, { errno, times });
const suite = (r: ReturnType<typeof probeCapabilities>, name: string) => r.suites.find((s) => s.name === name)!;

beforeEach(() => {
  fake.failures.clear();
  fake.binds.clear();
});

describe('the capability probe and a transient bind() failure', () => {
  it('a one-off ENOMEM on ccm(aes) is tried again: imported material is still sealed with CCM', () => {
    fail('ccm(aes)', ENOMEM, 1);
    const r = probeCapabilities();
    expect([fake.binds.get('ccm(aes)'), suite(r, 'aes-256-ccm').status]).toEqual([2, 'available']);
    // daemon.ts picks the sealing suite this way.
    expect(WRAP_SUITES.find((s) => suite(r, s.name).status === 'available')?.name).toBe('aes-256-ccm');
    expect(inconclusiveProbe(r)).toBeUndefined();
  });

  it('an EAGAIN twice on gcm(aes) does not change the default suite', () => {
    fail('gcm(aes)', EAGAIN, 2);
    const r = probeCapabilities();
    expect([fake.binds.get('gcm(aes)'), r.defaultAeadSuite]).toEqual([3, 'aes-256-gcm']);
  });

  it('a transient errno on every try leaves the probe inconclusive: the daemon does not start on it', () => {
    fail('gcm(aes)', ENOMEM);
    const r = probeCapabilities();
    expect(fake.binds.get('gcm(aes)')).toBe(4);
    expect(suite(r, 'aes-256-gcm').algorithms[0]).toMatchObject({ status: 'error', errno: 'ENOMEM', tries: 4 });
    expect(inconclusiveProbe(r)).toMatch(/^the kernel could not say whether it offers gcm\(aes\) \(ENOMEM, 4 tries\): /);
    expect(r.summary).toContain('Failed to probe: aes-256-gcm (gcm(aes): ENOMEM).');
  });

  it('doctor exits 1 when the daemon would not start on its probe, 0 when it would (review by helper-90)', () => {
    const run = () => {
      let out = '';
      return { code: doctor(false, (s) => (out += s)), out };
    };
    expect(run()).toMatchObject({ code: 0, out: expect.stringContaining('Verdict: ringfence can work') });
    fail('ccm(aes)', ENOMEM);
    const inconclusive = run();
    expect(inconclusive.code).toBe(1);
    expect(inconclusive.out).toMatch(/Verdict: ringfence cannot work in a process like this one \(uid \d+\): the kernel could not say whether it offers ccm\(aes\) \(ENOMEM, 4 tries\)/);
  });

  it('other errnos are answers: not tried again, and the daemon starts without the suite', () => {
    fail('gcm(aes)', EINVAL);
    fail('ccm(aes)', ENOENT);
    const r = probeCapabilities();
    expect([fake.binds.get('gcm(aes)'), fake.binds.get('ccm(aes)')]).toEqual([1, 1]);
    expect([suite(r, 'aes-256-gcm').status, suite(r, 'aes-256-ccm').status]).toEqual(['error', 'missing']);
    expect(r.defaultAeadSuite).toBe('chacha20-poly1305');
    expect(inconclusiveProbe(r)).toBeUndefined();
  });
});
