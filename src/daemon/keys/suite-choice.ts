/**
 * Which suite a new key gets: the one asked for, checked against its purpose and what this kernel
 * allows (af_alg_restrict refuses some to the daemon: the error names those it allows), or the
 * first of its purpose this kernel allows, of the material's length for an imported key.
 */
import type { AlgStatus } from '../../capabilities/probe.js';
import { AEAD_SUITES, MAC_SUITES, aeadSuite, macSuite, type AeadSuite, type MacSuite } from '../../capabilities/suites.js';
import { ApiError, ErrorReason, Status, invalidField } from '../api/errors.js';
import type { Purpose } from './model.js';

export function chooseSuite(suiteStatus: (suite: string) => AlgStatus, purpose: Purpose | undefined, suiteName: string | undefined, materialBytes?: number): AeadSuite | MacSuite {
  let suite: AeadSuite | MacSuite | undefined;
  if (suiteName) {
    suite = aeadSuite(suiteName) ?? macSuite(suiteName);
    if (!suite) throw invalidField('suite', `unknown suite "${suiteName}"`);
    const suitePurpose = suite.kind === 'aead' ? 'aead' : 'mac';
    if (purpose && purpose !== suitePurpose) {
      throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.SUITE_PURPOSE_MISMATCH, `suite ${suite.name} is for ${suitePurpose.toUpperCase()} keys, not ${purpose.toUpperCase()}`, { suite: suite.name, purpose: purpose.toUpperCase() });
    }
  } else {
    const candidates: readonly (AeadSuite | MacSuite)[] = (purpose ?? 'aead') === 'aead' ? AEAD_SUITES : MAC_SUITES;
    const fits = candidates.filter((s) => materialBytes === undefined || s.keyBytes.reduce((a, b) => a + b, 0) === materialBytes);
    suite = fits.find((s) => suiteStatus(s.name) === 'available');
    if (!suite) {
      if (materialBytes !== undefined && fits.length === 0) {
        // What would fit, and the other purpose if its suites take this length (found by review).
        const sizes = [...new Set(candidates.map((s) => s.keyBytes.reduce((a, b) => a + b, 0)))].sort((a, b) => a - b);
        const other = (purpose ?? 'aead') === 'aead' ? MAC_SUITES : AEAD_SUITES;
        const otherFit = other.find((s) => s.keyBytes.reduce((a, b) => a + b, 0) === materialBytes);
        const hint = otherFit ? `; ${materialBytes} bytes fit ${otherFit.name} (purpose ${otherFit.kind === 'aead' ? 'AEAD' : 'MAC'})` : '';
        throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.KEY_MATERIAL_INVALID, `no ${(purpose ?? 'aead').toUpperCase()} suite takes ${materialBytes}-byte keys (they take ${sizes.join(', ')} bytes)${hint}`, {
          field: 'material',
          expected_bytes: sizes.join(','),
          actual_bytes: String(materialBytes),
        });
      }
      throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE, `this kernel allows none of the ${(purpose ?? 'aead').toUpperCase()} suites${materialBytes !== undefined ? ` for ${materialBytes}-byte keys` : ''}; see \`ringfence doctor\``);
    }
  }
  const status = suiteStatus(suite.name);
  const kernelAlgorithm = suite.algorithms.map((a) => a.name).join(',');
  if (status === 'restricted') {
    const allowed = (suite.kind === 'aead' ? AEAD_SUITES : MAC_SUITES).filter((s) => suiteStatus(s.name) === 'available').map((s) => s.name);
    throw new ApiError(
      Status.FAILED_PRECONDITION,
      ErrorReason.SUITE_RESTRICTED_BY_KERNEL,
      `this kernel refuses ${suite.name} (${kernelAlgorithm}) to the daemon: under af_alg_restrict=1 it allows privileged processes only an allowlist that excludes it; ${allowed.length ? `choose one it allows (${allowed.join(', ')}) or leave the suite unset for the default` : 'it allows no suite for this purpose'}`,
      { suite: suite.name, kernel_algorithm: kernelAlgorithm, allowed: allowed.join(',') },
    );
  }
  if (status !== 'available') {
    throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE, `${status === 'error' ? `the daemon's start-up probe of ${kernelAlgorithm} failed, so it does not use ${suite.name}` : `this kernel does not provide ${suite.name} (${kernelAlgorithm})`}; \`ringfence doctor\` shows why`, { suite: suite.name, kernel_algorithm: kernelAlgorithm });
  }
  return suite;
}

/**
 * Why an existing key cannot be used or given a new version on this kernel, or undefined: its suite
 * is refused (af_alg_restrict) or missing. Such a key comes from state made on a kernel that allowed
 * its suite (a move from 6.12 to af_alg_restrict=1); found by review (helper-89). A suite whose probe
 * failed with another errno is not refused here: the engine tries it and reports the errno (for use
 * and rotation alike, or a key would encrypt on and never rotate: review by helper-90).
 */
export function keySuiteRefusal(suiteStatus: (suite: string) => AlgStatus, key: { name: string; suite: string }, doing: 'use' | 'rotate'): ApiError | undefined {
  const status = suiteStatus(key.suite);
  if (status === 'available' || status === 'error') return undefined;
  const suite = aeadSuite(key.suite) ?? macSuite(key.suite);
  const kernelAlgorithm = suite ? suite.algorithms.map((a) => a.name).join(',') : key.suite;
  const allowed = (suite?.kind === 'mac' ? MAC_SUITES : AEAD_SUITES).filter((s) => suiteStatus(s.name) === 'available').map((s) => s.name);
  const why = status === 'restricted' ? 'which this kernel refuses to the daemon under af_alg_restrict=1' : 'which this kernel does not provide';
  const effect = doing === 'rotate' ? 'a new version could not be used here' : 'it cannot be used here';
  const next = allowed.length ? `; for new data, create a key of a suite this kernel allows (${allowed.join(', ')})` : '';
  return new ApiError(
    Status.FAILED_PRECONDITION,
    status === 'restricted' ? ErrorReason.SUITE_RESTRICTED_BY_KERNEL : ErrorReason.SUITE_UNAVAILABLE,
    `key "${key.name}" is ${key.suite}, ${why}: ${effect}; its versions work again on a kernel that allows ${kernelAlgorithm}${next}`,
    { key_name: key.name, suite: key.suite, kernel_algorithm: kernelAlgorithm, allowed: allowed.join(',') },
  );
}
