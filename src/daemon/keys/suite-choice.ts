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
    throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE, `this kernel does not provide ${suite.name} (${kernelAlgorithm}: ${status}); see \`ringfence doctor\``, { suite: suite.name, kernel_algorithm: kernelAlgorithm });
  }
  return suite;
}
