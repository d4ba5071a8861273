/** The key manager's refusals that several of its operations share, and the checks of imported material. */
import { timingSafeEqual } from 'node:crypto';
import type { AeadSuite, MacSuite } from '../../capabilities/suites.js';
import { ApiError, ErrorReason, Status } from '../api/errors.js';
import type { KeyRecord } from './model.js';

export function limitReached(record: KeyRecord, version: number, limit: number, what: string, when = '', more: Record<string, string> = {}): ApiError {
  return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED, `key "${record.name}" version ${version} reached its limit of ${limit} encryptions${when ? ` ${when}` : ''}; ${what}`, {
    key_name: record.name,
    key_version: String(version),
    encryption_limit: String(limit),
    ...more,
  });
}

export function pendingDeletion(record: KeyRecord, what: string): ApiError {
  const when = record.deletionTime !== null ? new Date(record.deletionTime).toISOString() : '';
  return new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION, `key "${record.name}" is scheduled for deletion${when ? ` at ${when}` : ''}; ${what}`, {
    key_name: record.name,
    ...(when ? { deletion_time: when } : {}),
  });
}

export function originMismatch(record: KeyRecord, message: string): ApiError {
  return new ApiError(Status.FAILED_PRECONDITION, ErrorReason.KEY_ORIGIN_MISMATCH, message, { key_name: record.name, origin: record.origin === 'generated' ? 'GENERATED_IN_KERNEL' : 'IMPORTED' });
}

export function checkMaterial(suite: AeadSuite | MacSuite, material: Buffer): void {
  const want = suite.keyBytes.reduce((a, b) => a + b, 0);
  if (material.length !== want) {
    throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.KEY_MATERIAL_INVALID, `${suite.name} keys are ${want} bytes${suite.keyBytes.length > 1 ? ` (${suite.keyBytes.join(' + ')})` : ''}; got ${material.length}`, { field: 'material', suite: suite.name, expected_bytes: String(want), actual_bytes: String(material.length) });
  }
  // Encrypt-then-MAC needs independent keys: the cipher key as MAC key is refused (compared in constant time).
  if (suite.keyBytes.length === 2 && suite.keyBytes[0] === suite.keyBytes[1]) {
    const half = suite.keyBytes[0]!;
    if (timingSafeEqual(material.subarray(0, half), material.subarray(half))) {
      throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.KEY_MATERIAL_INVALID, `${suite.name} key material is a cipher key and a MAC key that must differ; both halves are the same`, { field: 'material', suite: suite.name });
    }
  }
}
