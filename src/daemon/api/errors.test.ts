/**
 * How an authentication failure is worded to the client: the most common cause, associated data
 * that differs from (or is missing compared with) the encryption's, comes first, so a caller knows
 * what to check; the daemon cannot tell it from tampering, and says nothing of the data.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../engine/errors.js';
import { ErrorReason, toApiError } from './errors.js';

describe('toApiError: AUTHENTICATION_FAILED', () => {
  it('is INVALID_ARGUMENT naming associated data that differs from the encryption\'s as a cause, then tampering', () => {
    const e = toApiError(new EngineError('AUTHENTICATION_FAILED', 'gcm(aes) with key 7: authentication failed'));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.reason).toBe(ErrorReason.AUTHENTICATION_FAILED);
    expect(e.message).toBe('authentication failed: the associated data differs from the one given at encryption (leaving it out counts as different), or the ciphertext was altered');
    // Neither the algorithm nor the key serial of the engine's own message reach the client.
    expect(e.message).not.toMatch(/gcm|key 7/);
    expect(e.metadata).toEqual({});
  });
});
