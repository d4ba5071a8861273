/**
 * Probe results on kernel states the other host tests do not fake: socket(AF_ALG) failing for a
 * reason other than a kernel without it, transient bind failures everywhere, an unreadable
 * af_alg_restrict, root without CAP_NET_ADMIN (review by helper-119; each failed on the old probe).
 * The user namespace half is in privilege.test.ts, in real namespaces.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { SyscallError } from '../../native-ffi/syscall-error.js';

const fake = vi.hoisted(() => ({
  family: [] as number[], // errnos socket(AF_ALG) fails with, one per call, then it works
  failures: new Map<string, number>(), // name -> errno on every bind
  files: new Map<string, string | number>(), // path -> contents, or an errno to throw
  missingDirs: new Set<string>(), // paths existsSync says are not there
}));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const readFileSync = ((path: string, ...rest: unknown[]) => {
    const f = fake.files.get(String(path));
    if (f === undefined) return (real.readFileSync as (...a: unknown[]) => unknown)(path, ...rest);
    if (typeof f === 'number') {
      const code = f === 2 ? 'ENOENT' : 'EACCES';
      throw Object.assign(new Error(`${code}: ${String(path)}`), { code, errno: -f });
    }
    return f;
  }) as typeof real.readFileSync;
  const existsSync = ((path: string) => !fake.missingDirs.has(String(path)) && real.existsSync(path)) as typeof real.existsSync;
  return { ...real, readFileSync, existsSync, default: { ...real, readFileSync, existsSync } };
});

vi.mock('../../native-ffi/af-alg.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../native-ffi/af-alg.js')>();
  let fd = 100;
  return {
    ...real,
    checkFamily: () => {
      const e = fake.family.shift();
      if (e !== undefined) throw new SyscallError('socket', e, 'AF_ALG');
    },
    openTransform: (_type: string, name: string) => {
      const e = fake.failures.get(name);
      if (e !== undefined) throw new SyscallError('bind', e, name);
      return fd++;
    },
    closeFd: () => undefined,
  };
});
vi.mock('./keying-probe.js', () => ({ probeKeySerial: () => ({ supported: true, verified: true, detail: 'ok' }), probeGeneratedKeys: () => ({ supported: true, detail: 'ok' }) }));

const { cannotWork, inconclusiveProbe, probeCapabilities, RESTRICT_SYSCTL } = await import('./probe.js');
const { formatReport } = await import('../client/commands/doctor.js');

const [ENOENT, EPERM, EACCES, ENOMEM, EMFILE] = [2, 1, 13, 12, 24];

beforeEach(() => {
  fake.family = [];
  fake.failures.clear();
  fake.files.clear();
  fake.missingDirs.clear();
});

describe('socket(AF_ALG) failing for a reason other than a kernel without AF_ALG', () => {
  it('EMFILE once at start-up is retried like a bind, not reported as "this kernel has no AF_ALG"', () => {
    fake.family = [EMFILE];
    const r = probeCapabilities();
    expect(r.afAlg.present).toBe(true);
    expect(cannotWork(r)).toBeUndefined();
    expect(inconclusiveProbe(r)).toBeUndefined();
  });

  it('EPERM (seccomp/LSM) is an error, not "missing" suites and "the kernel lacks CONFIG_CRYPTO_USER_API_*"', () => {
    fake.family = [EPERM];
    const r = probeCapabilities();
    expect(new Set(r.suites.map((s) => s.status))).toEqual(new Set(['error']));
    expect(r.summary[0]).toBe('socket(AF_ALG) is refused to this process (EPERM): a seccomp filter or security module blocks it. ringfence cannot serve cryptography here.');
    expect(cannotWork(r)).toBe('socket(AF_ALG) is refused to this process (EPERM): a seccomp filter or security module blocks it');
  });

  it('EMFILE on every try is inconclusive (start again), not a kernel without AF_ALG', () => {
    fake.family = [EMFILE, EMFILE, EMFILE, EMFILE];
    const r = probeCapabilities();
    expect(r.afAlg).toEqual({ present: false, errno: 'EMFILE', tries: 4 });
    expect(cannotWork(r)).toBeUndefined();
    expect(inconclusiveProbe(r)).toMatch(/^socket\(AF_ALG\) failed with EMFILE on each of 4 tries/);
  });

  it('EAFNOSUPPORT is a kernel without AF_ALG, as before', () => {
    fake.family = [97];
    const r = probeCapabilities();
    expect(new Set(r.suites.map((s) => s.status))).toEqual(new Set(['missing']));
    expect(cannotWork(r)).toBe('this kernel has no AF_ALG (EAFNOSUPPORT)');
  });
});

describe('transient bind failures on every AEAD algorithm', () => {
  it('the verdict says the probe was inconclusive (start again), not that no AEAD suite is usable here', () => {
    for (const n of ['gcm(aes)', 'rfc7539(chacha20,poly1305)', 'ccm(aes)', 'ctr(aes)']) fake.failures.set(n, ENOMEM);
    const r = probeCapabilities();
    expect(inconclusiveProbe(r)).toMatch(/could not say/);
    // daemon.ts and doctor ask inconclusiveProbe first: cannotWork's "no AEAD suite" would read as final.
    expect(formatReport(r)).toMatch(/Verdict: ringfence cannot work in a process like this one \(uid \d+\): the kernel could not say/);
  }, 20_000);
});

describe('/proc/sys/crypto/af_alg_restrict present but unreadable', () => {
  it('is not reported as "not restricted", and ENOENT is not reported as "Not in this kernel"', () => {
    fake.files.set(RESTRICT_SYSCTL, EACCES);
    fake.failures.set('gcm(aes)', ENOENT);
    const r = probeCapabilities();
    expect(r.restrict).toEqual({ sysctl: RESTRICT_SYSCTL, value: null, unreadable: 'EACCES' });
    expect(r.summary).toContain(`${RESTRICT_SYSCTL} could not be read (EACCES): AF_ALG may be restricted; taken as restricted.`);
    expect(r.suites.find((s) => s.name === 'aes-256-gcm')!.status).toBe('restricted');
  });
});

describe('no /proc/sys at all (ProcSubset=pid)', () => {
  it('says nothing of the kernel: not "not restricted" (review by helper-120)', () => {
    fake.files.set(RESTRICT_SYSCTL, ENOENT);
    fake.missingDirs.add('/proc/sys');
    expect(probeCapabilities().restrict).toEqual({ sysctl: RESTRICT_SYSCTL, value: null, unreadable: 'no /proc/sys in this process' });
    fake.missingDirs.clear();
    expect(probeCapabilities().restrict).toEqual({ sysctl: RESTRICT_SYSCTL, value: null }); // a kernel without the sysctl
  });
});

describe('root whose bounding set lacks CAP_NET_ADMIN (systemd CapabilityBoundingSet=)', () => {
  it('is not told to "run ringfenced as root"', () => {
    fake.files.set('/proc/self/status', 'Name:\tnode\nCapEff:\t0000000000000000\n');
    fake.files.set(RESTRICT_SYSCTL, '1\n');
    const r = probeCapabilities();
    expect(r.privilege.sufficientForRestricted).toBe(false);
    expect(r.privilege.uid).toBe(0); // tests run as root
    expect(r.summary).toContain('This process lacks the privilege restricted kernels require: this process is root but lacks CAP_NET_ADMIN (a CapabilityBoundingSet= or container that drops it): keep CAP_NET_ADMIN, as deploy/ringfenced.service does.');
  });
});

describe('ENOENT under af_alg_restrict=1 for an algorithm on its allowlist', () => {
  // ccm(aes) is on 7.3's aead allowlist (restrict-allowlist.ts), gcm(aes) is not.
  it('a privileged process: the allowlisted one is "not in this kernel", the other "refused"', () => {
    fake.files.set(RESTRICT_SYSCTL, '1\n');
    fake.failures.set('ccm(aes)', ENOENT);
    fake.failures.set('gcm(aes)', ENOENT);
    const r = probeCapabilities();
    expect(r.privilege.sufficientForRestricted).toBe(true); // tests run as root
    expect(r.suites.find((s) => s.name === 'aes-256-ccm')!.status).toBe('missing');
    expect(r.suites.find((s) => s.name === 'aes-256-gcm')!.status).toBe('restricted');
    expect(r.summary).toContain('Not in this kernel: aes-256-ccm.');
    expect(r.summary).toContain('Refused under af_alg_restrict: aes-256-gcm.');
  });

  it('an unprivileged process: every ENOENT is the restriction (it gets no AF_ALG at all)', () => {
    fake.files.set('/proc/self/status', 'Name:\tnode\nCapEff:\t0000000000000000\n');
    fake.files.set(RESTRICT_SYSCTL, '1\n');
    fake.failures.set('ccm(aes)', ENOENT);
    const r = probeCapabilities();
    expect(r.privilege.sufficientForRestricted).toBe(false);
    expect(r.suites.find((s) => s.name === 'aes-256-ccm')!.status).toBe('restricted');
  });

  it('without af_alg_restrict, ENOENT is "not in this kernel" whatever the algorithm', () => {
    fake.files.set(RESTRICT_SYSCTL, ENOENT);
    fake.failures.set('gcm(aes)', ENOENT);
    expect(probeCapabilities().suites.find((s) => s.name === 'aes-256-gcm')!.status).toBe('missing');
  });
});

describe('af_alg_restrict = 2 (7.3: AF_ALG off for every process, root included)', () => {
  it('names the sysctl, not a kernel without CONFIG_CRYPTO_USER_API_* (found by review: helper-179)', () => {
    fake.files.set(RESTRICT_SYSCTL, '2\n');
    fake.family = [97]; // what 7.3-rc7 answers root at 2, measured in the test VM
    const r = probeCapabilities();
    expect(cannotWork(r)).toBe(`${RESTRICT_SYSCTL} = 2 switches AF_ALG off for every process (EAFNOSUPPORT); ringfence needs it at 1 or 0`);
    expect(r.summary[0]).toBe(`${RESTRICT_SYSCTL} = 2: AF_ALG is switched off for every process, root included (EAFNOSUPPORT). ringfence cannot serve cryptography here; it needs the sysctl at 1 (privileged processes keep an allowlist) or 0.`);
    const text = formatReport(r);
    expect(text).not.toMatch(/CONFIG_CRYPTO_USER_API|test VM/);
  });
});
