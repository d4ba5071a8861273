import { describe, expect, it } from 'vitest';
import { CallerSlots } from './caller-slots.js';
import { ApiError, ErrorReason, Status } from './errors.js';

describe('CallerSlots', () => {
  it('gives each caller its own slots; beyond them RESOURCE_EXHAUSTED / DAEMON_BUSY naming the limit; a release frees one, once', () => {
    const slots = new CallerSlots(2, 'HashStream calls', 'hash_streams_per_caller', 'maxHashStreamsPerCaller');
    const a1 = slots.acquire('uid:1');
    slots.acquire('uid:1');
    let refused: unknown;
    try {
      slots.acquire('uid:1');
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(ApiError);
    const e = refused as ApiError;
    expect([e.code, e.reason, e.metadata.limit]).toEqual([Status.RESOURCE_EXHAUSTED, ErrorReason.DAEMON_BUSY, 'hash_streams_per_caller']);
    expect(e.message).toBe('uid 1 already has 2 HashStream calls open, its limit (maxHashStreamsPerCaller); finish one or retry later');
    // Another caller is not affected.
    slots.acquire('uid:2');
    a1();
    a1();
    expect([slots.heldBy('uid:1'), slots.heldBy('uid:2')]).toEqual([1, 1]);
    slots.acquire('uid:1');
    expect(() => slots.acquire('uid:1')).toThrow(ApiError);
  });

  it('with a daemon-wide limit: a caller below its own is refused once all callers hold it (limit `calls`); the caller\'s own limit is named first', () => {
    const slots = new CallerSlots(2, 'calls', 'calls_per_caller', 'maxCallsPerCaller', { limit: 3, limitName: 'calls', setting: 'maxCalls' });
    const held = [slots.acquire('uid:1'), slots.acquire('uid:1'), slots.acquire('uid:2')];
    expect(() => slots.acquire('uid:1')).toThrow(/uid 1 already has 2 calls open, its limit \(maxCallsPerCaller\)/);
    let refused: ApiError | undefined;
    try {
      slots.acquire('uid:3');
    } catch (e) {
      refused = e as ApiError;
    }
    expect([refused?.code, refused?.reason, refused?.metadata.limit, refused?.message]).toEqual([Status.RESOURCE_EXHAUSTED, ErrorReason.DAEMON_BUSY, 'calls', 'the daemon already has 3 calls open, its limit (maxCalls); retry later']);
    expect(slots.total).toBe(3);
    held[0]!();
    held[0]!();
    expect(slots.total).toBe(2);
    slots.acquire('uid:3');
    expect([slots.total, slots.heldBy('uid:1'), slots.heldBy('uid:3')]).toEqual([3, 1, 1]);
  });
});
