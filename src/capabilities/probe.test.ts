import { describe, expect, it } from 'vitest';
import { formatReport } from '../client/commands/doctor.js';
import { driverFor, parseProcCrypto } from './proc-crypto.js';
import { cannotWork, summarize, type CapabilityReport } from './probe.js';

const PROC_CRYPTO = `name         : gcm(aes)
driver       : generic-gcm-aesni
module       : aesni_intel
priority     : 400
type         : aead

name         : gcm(aes)
driver       : gcm_base(ctr(aes-generic),ghash-generic)
module       : gcm
priority     : 100
type         : aead

name         : sha256
driver       : sha256-generic
module       : kernel
priority     : 100
type         : shash
`;

describe('/proc/crypto', () => {
  it('picks the highest-priority driver for a name', () => {
    const entries = parseProcCrypto(PROC_CRYPTO);
    expect(entries).toHaveLength(3);
    expect(driverFor(entries, 'gcm(aes)')).toMatchObject({ driver: 'generic-gcm-aesni', module: 'aesni_intel', priority: 400 });
    expect(driverFor(entries, 'ccm(aes)')).toBeUndefined();
  });
});

describe('summarize', () => {
  const base: CapabilityReport = {
    kernel: { release: '7.3-amd64' },
    afAlg: { present: true },
    keySerial: { supported: true, verified: true, detail: '' },
    generatedKeys: { supported: true, detail: 'encrypted keys keyed hmac(sha256) by serial' },
    restrict: { sysctl: '/proc/sys/crypto/af_alg_restrict', value: 1 },
    privilege: { uid: 1000, capNetAdmin: false, capSysAdmin: false, initialUserNamespace: true, sufficientForRestricted: false, required: true },
    suites: [{ name: 'aes-256-gcm', kind: 'aead', status: 'restricted', algorithms: [] }],
    defaultAeadSuite: null,
    defaultMacSuite: null,
    summary: [],
  };

  it('says plainly that an unprivileged process on a restricted kernel needs privilege', () => {
    const text = summarize(base).join('\n');
    expect(text).toMatch(/af_alg_restrict = 1/);
    expect(text).toMatch(/lacks the privilege.*CAP_NET_ADMIN/);
    expect(text).toMatch(/Refused under af_alg_restrict: aes-256-gcm/);
    expect(text).toMatch(/No AEAD suite is usable/);
  });

  it('says when AF_ALG is absent; doctor, not the summary the daemon logs, points at the VM', () => {
    const report = { ...base, afAlg: { present: false, errno: 'EAFNOSUPPORT' } };
    const text = summarize(report).join('\n');
    expect(text).toMatch(/AF_ALG is not available \(EAFNOSUPPORT\)/);
    expect(text).not.toMatch(/npm run vm/);
    expect(formatReport({ ...report, summary: summarize(report) })).toMatch(/\n {2}To try ringfence on a machine like this, run it in the project's test VM: npm run vm -- scripts\/try.sh\n/);
  });

  it('says whether kernel-generated keys work, and that imported ones still do when they do not', () => {
    expect(summarize(base).join('\n')).toMatch(/Kernel-generated keys work: encrypted keys keyed hmac\(sha256\) by serial\./);
    const text = summarize({ ...base, generatedKeys: { supported: false, detail: 'the kernel has no encrypted key type (CONFIG_ENCRYPTED_KEYS)', errno: 'ENODEV' } }).join('\n');
    expect(text).toMatch(/Kernel-generated keys do not work here: the kernel has no encrypted key type \(CONFIG_ENCRYPTED_KEYS\)\. CreateKey will fail; ImportKey still works\./);
    expect(summarize({ ...base, generatedKeys: { supported: null, detail: 'not checked' } }).join('\n')).not.toMatch(/generated/);
  });

  it('names the default suite when one works', () => {
    const text = summarize({ ...base, restrict: { ...base.restrict, value: null }, defaultAeadSuite: 'aes-256-gcm' }).join('\n');
    expect(text).toMatch(/not restricted/);
    expect(text).toMatch(/Default AEAD suite for new keys: aes-256-gcm/);
  });
});

describe('cannotWork (the daemon refuses to start, doctor exits 1)', () => {
  const works: CapabilityReport = {
    kernel: { release: '7.3-amd64' },
    afAlg: { present: true },
    keySerial: { supported: true, verified: true, detail: '' },
    generatedKeys: { supported: true, detail: 'encrypted keys keyed hmac(sha256) by serial' },
    restrict: { sysctl: '/proc/sys/crypto/af_alg_restrict', value: 1 },
    privilege: { uid: 0, capNetAdmin: true, capSysAdmin: true, initialUserNamespace: true, sufficientForRestricted: true, required: true },
    suites: [{ name: 'aes-256-ccm', kind: 'aead', status: 'available', algorithms: [] }],
    defaultAeadSuite: 'aes-256-ccm',
    defaultMacSuite: 'hmac-sha256',
    summary: [],
  };

  it('is undefined when a suite works and keys go by serial', () => {
    expect(cannotWork(works)).toBeUndefined();
    expect(cannotWork({ ...works, keySerial: { supported: null, verified: false, detail: 'not checked' } })).toBeUndefined();
  });

  it('names the missing privilege on a restricted kernel (found by review: the daemon started and served nothing)', () => {
    const unprivileged = { ...works, privilege: { ...works.privilege, uid: 65534, capNetAdmin: false, capSysAdmin: false, sufficientForRestricted: false }, defaultAeadSuite: null };
    expect(cannotWork(unprivileged)).toMatch(/af_alg_restrict = 1 and this process lacks CAP_NET_ADMIN/);
  });

  it('names no AF_ALG, no keying by serial, a wrong result, and no suite', () => {
    expect(cannotWork({ ...works, restrict: { ...works.restrict, value: null }, afAlg: { present: false, errno: 'EAFNOSUPPORT' } })).toMatch(/no AF_ALG \(EAFNOSUPPORT\)/);
    expect(cannotWork({ ...works, keySerial: { supported: false, verified: false, detail: 'needs Linux >= 6.2' } })).toMatch(/cannot key AF_ALG by kernel key serial/);
    expect(cannotWork({ ...works, keySerial: { supported: true, verified: false, detail: '' } })).toMatch(/wrong result/);
    expect(cannotWork({ ...works, defaultAeadSuite: null })).toBe('no AEAD suite is usable on this kernel');
  });
});
