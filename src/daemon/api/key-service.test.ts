import { create } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { ApiError } from './errors.js';
import { durationMs } from './key-service.js';

describe('durationMs (rotation periods and deletion waits from the wire)', () => {
  const d = (seconds: bigint, nanos: number) => create(DurationSchema, { seconds, nanos });

  it('converts to milliseconds, rounding a fraction up so that only zero is zero ("off")', () => {
    expect(durationMs('rotation_period', undefined)).toBeUndefined();
    expect(durationMs('rotation_period', d(0n, 0))).toBe(0);
    expect(durationMs('rotation_period', d(3600n, 0))).toBe(3_600_000);
    expect(durationMs('rotation_period', d(0n, 500_000))).toBe(1);
    expect(durationMs('rotation_period', d(1n, 1))).toBe(1001);
  });

  it('refuses negative, malformed and absurd durations with INVALID_FIELD', () => {
    for (const bad of [d(-1n, 0), d(0n, -1), d(0n, 1_000_000_000), d(10n ** 12n + 1n, 0)]) {
      expect(() => durationMs('rotation_period', bad)).toThrow(ApiError);
    }
  });
});
