import { describe, expect, it } from 'vitest';
import { ApiError, ErrorReason } from '../api/errors.js';
import { chooseSuite } from './suite-choice.js';

const available = () => 'available' as const;

function refusal(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('chooseSuite for imported material', () => {
  it('picks the suite the material fits', () => {
    expect(chooseSuite(available, undefined, undefined, 32).name).toBe('aes-256-gcm');
    expect(chooseSuite(available, 'mac', undefined, 48).name).toBe('hmac-sha384');
  });

  it('refuses a length no suite of the purpose takes, saying which lengths do and which purpose this one fits (found by review: metadata had only the field)', () => {
    const e = refusal(() => chooseSuite(available, undefined, undefined, 48));
    expect(ErrorReason[e.reason]).toBe('KEY_MATERIAL_INVALID');
    expect(e.message).toBe('no AEAD suite takes 48-byte keys (they take 32, 64 bytes); 48 bytes fit hmac-sha384 (purpose MAC)');
    expect(e.metadata).toEqual({ field: 'material', expected_bytes: '32,64', actual_bytes: '48' });
    const mac = refusal(() => chooseSuite(available, 'mac', undefined, 33));
    expect(mac.message).toBe('no MAC suite takes 33-byte keys (they take 32, 48, 64 bytes)');
    expect(mac.metadata).toEqual({ field: 'material', expected_bytes: '32,48,64', actual_bytes: '33' });
  });
});
