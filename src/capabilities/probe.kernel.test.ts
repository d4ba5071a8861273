import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { currentKernel, RESTRICTED_FOR_ROOT } from '../../test/support/kernel-matrix.js';
import { NOBODY, PROJECT_ROOT, projectModule, runTsJson } from '../../test/support/run-ts.js';
import { probeCapabilities, type CapabilityReport } from './probe.js';
import { allowedWhenRestricted } from './restrict-allowlist.js';
import { ALL_SUITES } from './suites.js';

const kernel = currentKernel();

describe(`capability probe on the ${kernel} kernel`, () => {
  const report = probeCapabilities();

  it('finds AF_ALG and verifies keying by key serial against node:crypto', () => {
    expect(report.afAlg.present).toBe(true);
    expect(report.keySerial).toMatchObject({ supported: true, verified: true });
  });

  it('generates encrypted keys, keys AF_ALG by their serial, and reloads them from their blob to the same key', () => {
    expect(report.generatedKeys).toEqual({ supported: true, detail: 'encrypted keys keyed hmac(sha256) by serial, and one reloaded from its wrapped blob gave the same MAC' });
  });

  it('reports af_alg_restrict as the kernel has it', () => {
    expect(report.restrict.value).toBe(kernel === 'restricted' ? 1 : null);
    expect(report.privilege.required).toBe(kernel === 'restricted');
    expect(report.privilege.sufficientForRestricted).toBe(true); // root in the guest
  });

  it('classifies every suite, naming the kernel driver of the available ones', () => {
    for (const suite of ALL_SUITES) {
      const r = report.suites.find((s) => s.name === suite.name)!;
      const want = kernel === 'restricted' && RESTRICTED_FOR_ROOT.has(suite.name) ? 'restricted' : 'available';
      expect(r.status, suite.name).toBe(want);
      if (want === 'available') for (const a of r.algorithms) expect(a.driver, a.name).toMatch(/\S/);
      else expect(r.algorithms.some((a) => a.errno === 'ENOENT')).toBe(true);
    }
    expect(report.defaultAeadSuite).toBe(kernel === 'restricted' ? 'aes-256-ccm' : 'aes-256-gcm');
    expect(report.defaultMacSuite).toBe('hmac-sha256');
  });

  it('binds every algorithm, or under af_alg_restrict exactly those restrict-allowlist.ts lists (the probe tells refused from missing by it)', () => {
    for (const a of report.suites.flatMap((s) => s.algorithms)) {
      expect(a.status, `${a.type} ${a.name}`).toBe(kernel === 'restricted' && !allowedWhenRestricted(a) ? 'restricted' : 'available');
    }
  });

  it('tells an unprivileged process plainly what it may do', () => {
    const r = runTsJson<CapabilityReport>(
      `import { probeCapabilities } from ${projectModule('src/capabilities/probe.ts')}; console.log(JSON.stringify(probeCapabilities()));`,
      { uid: NOBODY },
    );
    expect(r.privilege.sufficientForRestricted).toBe(false);
    if (kernel === 'restricted') {
      for (const s of r.suites) expect(s.status, s.name).toBe('restricted');
      expect(r.defaultAeadSuite).toBeNull();
      expect(r.summary.join('\n')).toMatch(/lacks the privilege restricted kernels require/);
    } else {
      expect(r.suites.every((s) => s.status === 'available')).toBe(true);
      expect(r.defaultAeadSuite).toBe('aes-256-gcm');
    }
  });
});

describe('ringfence doctor', () => {
  const cli = `${PROJECT_ROOT}bin/ringfence`;

  it('--json reports this kernel for machines, exit 0', () => {
    const out = execFileSync(cli, ['doctor', '--json'], { encoding: 'utf8' });
    const r = JSON.parse(out) as CapabilityReport;
    const gcm = r.suites.find((s) => s.name === 'aes-256-gcm')!;
    expect(gcm.status).toBe(kernel === 'restricted' ? 'restricted' : 'available');
    for (const name of ['aes-256-ccm', 'aes-256-ctr-hmac-sha256', 'hmac-sha256']) {
      expect(r.suites.find((s) => s.name === name)!.status).toBe('available');
    }
  });

  it('prints a readable report for people', () => {
    const out = execFileSync(cli, ['doctor'], { encoding: 'utf8' });
    expect(out).toMatch(/AF_ALG is present/);
    expect(out).toMatch(kernel === 'restricted' ? /af_alg_restrict = 1/ : /not restricted/);
    expect(out).toMatch(/aes-256-gcm\s+aead\s+(available|restricted)/);
  });

  it('exits 1 for an unprivileged user on a restricted kernel, 0 otherwise', () => {
    const r = spawnSync(cli, ['doctor'], { encoding: 'utf8', uid: NOBODY, gid: NOBODY, env: { ...process.env, HOME: '/tmp' } });
    expect(r.status, r.stderr).toBe(kernel === 'restricted' ? 1 : 0);
  });
});
